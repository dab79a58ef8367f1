/**
 * SwinIR on onnxruntime-node: one session per padded input size (batch is a symbolic dimension), kept in a
 * small LRU cache. Why fixed sizes rather than symbolic H/W: the shift masks, window permutations and
 * bias(+mask) constants depend on the padded size, so a symbolic graph would have to compute them at run
 * time with Shape/Range arithmetic, and onnxruntime could neither constant-fold them nor plan memory for
 * static shapes. A benchmark set has a handful of sizes; a new size costs one graph build + session init.
 */
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import { buildSwinIROnnx, paddedSize, type NCHWArray, type SwinIRConfig } from '@harmoq/swinir';
import { EngineError } from './errors';
import { checkShape, cropTopLeft, reflectPadBottomRight, type Shape4 } from './layout';
import type { EngineOptions, SRRunner } from './types';

/** The engine's session defaults; the reasons and measurements are in docs/engine.md. */
export function defaultSessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    enableCpuMemArena: true,
    enableMemPattern: true,
    // exp(-100 - max) in masked softmax entries is subnormal; with denormals the attention MatMul after a
    // shifted-window softmax runs ~5x slower. Flushing changes those ~1e-44 terms to 0, far below float32
    // resolution of the sums they enter.
    // Fake-quant QuantizeLinear/DequantizeLinear pairs must stay float fake quantization: onnxruntime's QDQ
    // fusions would turn DQ->MatMul<-DQ into integer MatMuls (other rounding; per-channel zero points fail).
    extra: { session: { set_denormal_as_zero: '1', disable_quant_qdq: '1' } },
  };
}

export function defaultThreads(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

export class OnnxRunner implements SRRunner {
  readonly engine = 'onnx' as const;
  readonly config: SwinIRConfig;
  readonly scale: number;
  readonly description: string;
  readonly threads: number;
  private readonly sessions = new Map<string, SessionEntry>();
  private readonly maxSessions: number;
  private disposed = false;

  constructor(private readonly options: EngineOptions) {
    this.config = options.config;
    this.scale = options.config.upsampler === '' ? 1 : options.config.upscale;
    this.threads = options.threads ?? defaultThreads();
    if (!Number.isInteger(this.threads) || this.threads < 1) throw new EngineError(`threads ${options.threads} is not a positive integer`);
    this.maxSessions = options.maxSessions ?? 4;
    if (!Number.isInteger(this.maxSessions) || this.maxSessions < 1) {
      throw new EngineError(`maxSessions ${options.maxSessions} is not a positive integer`);
    }
    this.description = `onnxruntime-node ${ort.env.versions.node ?? '?'}, ${this.threads} thread${this.threads > 1 ? 's' : ''}`;
  }

  /** Padded sizes with a live session, least recently used first. */
  get cachedSizes(): string[] {
    return [...this.sessions.keys()];
  }

  async forward(input: Float32Array, shape: Shape4): Promise<NCHWArray> {
    if (this.disposed) throw new EngineError('this runner has been disposed');
    checkShape(input, shape, this.config.inChans);
    const [n, c, h, w] = shape;
    const ws = this.config.windowSize;
    const hp = paddedSize(h, ws), wp = paddedSize(w, ws);
    if (hp - h >= h || wp - w >= w) {
      throw new EngineError(`input ${h}x${w} is too small to reflect-pad to ${hp}x${wp} (pad must be < size, as in F.pad)`);
    }
    const padded = hp === h && wp === w ? input : reflectPadBottomRight(input, shape, hp - h, wp - w);
    const entry = this.entry(hp, wp);
    entry.inFlight++;
    let out: ort.Tensor;
    try {
      const session = await entry.session;
      out = (await session.run({ input: new ort.Tensor('float32', padded, [n, c, hp, wp]) })).output;
    } finally {
      entry.inFlight--;
      if (entry.evicted && entry.inFlight === 0) void entry.release();
    }
    const s = this.scale;
    const data = cropTopLeft(out.data as Float32Array, [n, c, hp * s, wp * s], h * s, w * s);
    return { data, shape: [n, c, h * s, w * s] };
  }

  /** The ONNX model the runner would build for a padded size (for saving or inspection). */
  buildModel(height: number, width: number): Uint8Array {
    return buildSwinIROnnx(this.config, this.options.stateDict, {
      ...this.options.graph, height, width, sites: this.options.sites,
    });
  }

  /** Ends profiling on every live session (when sessionOptions.enableProfiling was set). */
  async endProfiling(): Promise<void> {
    for (const e of this.sessions.values()) (await e.session).endProfiling();
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const e of all) {
      e.evicted = true;
      if (e.inFlight === 0) await e.release();
    }
  }

  private entry(hp: number, wp: number): SessionEntry {
    const key = `${hp}x${wp}`;
    let e = this.sessions.get(key);
    if (e) {
      this.sessions.delete(key); // re-insert: Map order is the LRU order
      this.sessions.set(key, e);
      return e;
    }
    const session = ort.InferenceSession.create(this.buildModel(hp, wp), {
      ...defaultSessionOptions(this.threads),
      ...(this.options.sessionOptions as ort.InferenceSession.SessionOptions | undefined),
    });
    e = new SessionEntry(session);
    this.sessions.set(key, e);
    session.catch(() => this.sessions.delete(key));
    while (this.sessions.size > this.maxSessions) {
      const [oldKey, old] = this.sessions.entries().next().value as [string, SessionEntry];
      this.sessions.delete(oldKey);
      old.evicted = true;
      if (old.inFlight === 0) void old.release();
    }
    return e;
  }
}

/** A cached session; an evicted one is released once no run is using it. */
class SessionEntry {
  inFlight = 0;
  evicted = false;
  private released = false;

  constructor(readonly session: Promise<ort.InferenceSession>) {}

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      await (await this.session).release();
    } catch {
      // a session that failed to create has nothing to release
    }
  }
}
