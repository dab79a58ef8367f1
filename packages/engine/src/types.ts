import type { ActivationHook, BackendName, NCHWArray, SiteHook, SwinIRConfig, SwinIROnnxOptions } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';

export type EngineName = 'onnx' | 'tfjs';
export const ENGINE_NAMES: readonly EngineName[] = ['onnx', 'tfjs'];

/** Graph formulation knobs for the ONNX engine (benchmarks); the defaults are the fastest measured. */
export type OnnxGraphOptions = Omit<SwinIROnnxOptions, 'height' | 'width' | 'batch' | 'sites'>;

export interface EngineOptions {
  engine: EngineName;
  config: SwinIRConfig;
  stateDict: StateDict;
  /** onnx: intra-op threads (default: os.availableParallelism()). tfjs ignores it (wasm runs one thread in Node). */
  threads?: number;
  /** tfjs backend (default: the first of tfjs-node-gpu, tfjs-node, wasm, cpu that loads). */
  backend?: BackendName;
  /** onnx: fake-quant and other graph rewrites at the named sites (see SiteHook). */
  sites?: SiteHook;
  /** tfjs: activation hook (see ActivationHook). */
  hook?: ActivationHook;
  /** onnx: how many sessions (one per padded input size) to keep; least recently used go first. Default 4. */
  maxSessions?: number;
  /** onnx: graph formulation options, for benchmarks. */
  graph?: OnnxGraphOptions;
  /** onnx: extra onnxruntime session options (e.g. enableProfiling), merged over the engine's defaults. */
  sessionOptions?: Record<string, unknown>;
}

/** A loaded model on one engine: SwinIR's forward on NCHW float32 batches of same-size images. */
export interface SRRunner {
  readonly engine: EngineName;
  readonly config: SwinIRConfig;
  /** Output/input size ratio (1 for the restoration head ''). */
  readonly scale: number;
  /** What runs it, e.g. 'onnxruntime-node 1.30.0, 16 threads' or 'tfjs 4.22.0 wasm'. */
  readonly description: string;
  /**
   * The official model forward: [N, C, H, W] in 0..1 -> [N, C, H*s, W*s], unclamped. Sizes that are not
   * window multiples are reflect-padded and cropped back exactly as `check_image_size` does.
   */
  forward(input: Float32Array, shape: readonly [number, number, number, number]): Promise<NCHWArray>;
  dispose(): Promise<void>;
}
