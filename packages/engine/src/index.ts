export * from './evaluate';
export { EngineError } from './errors';
export { ENGINE_NAMES, type EngineName, type EngineOptions, type OnnxGraphOptions, type SRRunner } from './types';
export { createEngine, loadRunner, type LoadRunnerOptions } from './engine';
export { OnnxRunner, defaultSessionOptions, defaultThreads } from './onnx-runner';
export { TfjsRunner } from './tfjs-runner';
export {
  superResolve, runTiled, flipPadToWindow, imageToTensor, tensorToImage, roundHalfEven,
  type SuperResolveOptions,
} from './protocol';
export { swinirFlops } from './flops';
