export { type MetricImage, type MetricOptions, type AllMetrics, MetricError, psnr, ssim, calculateAll } from './psnr-ssim';
