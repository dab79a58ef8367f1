export * from './paths';
export { DataError } from './errors';
export { type Image, assertImage, readImage, writePng, writeFileAtomic, cropTopLeft, modcrop } from './image';
export { type FloatImage, imresize, imresizeFloat } from './imresize';
export {
  BENCHMARKS, type BenchmarkName, type BenchmarkSpec, type BenchmarkEntry, type ImagePair,
  benchmarkName, listBenchmark, loadPair, listCalibration,
} from './benchmarks';
export * from './calibration';
