/**
 * @harmoq/quant: post-training quantization of SwinIR.
 * - quantizer: uniform fake quantizers (2DQuant's real-offset form, integer zero point), typed-array and tfjs ops.
 * - sites / plan: which tensors are quantized (2DQuant's 384 by default) and how.
 * - stats / search: float statistics and the bound searches the methods share.
 * - onnx / tfjs: fake quantization as ONNX nodes (fast evaluation) and as tfjs hooks (gradients).
 * - method + methods/: the PtqMethod interface and the PTQ_METHODS registry.
 * - config / quantize / qparams: resolving a run, calibrating, and the qparams file.
 */
export * from './errors';
export * from './quantizer';
export * from './sites';
export * from './plan';
export * from './stats';
export * from './search';
export * from './onnx';
export * from './tfjs';
export * from './capture';
export * from './method';
export * from './per-site';
export * from './context';
export { PTQ_METHODS, METHOD_NAMES, type MethodName } from './methods';
export * from './config';
export * from './qparams';
export * from './quantize';
export * from './export';
export * from './restrict';
