/**
 * @harmoq/swinir: the SwinIR model.
 * - config / architecture: constructor configs, presets, state-dict keys and shapes, inference from a
 *   checkpoint, strict checks with ArchitectureError, recomputed buffers.
 * - model: SwinIRModel, the tfjs reference forward (NCHW arrays in and out, stages, activation and weight
 *   hooks, differentiable via apply()); backend: initBackend; tiled: official-style tiling; load: loadSwinIR.
 * - onnx: the ONNX graph builder.
 */
export * from './config';
export * from './errors';
export * from './architecture';
export * from './backend';
export * from './model';
export * from './tiled';
export * from './load';
export * from './onnx';
