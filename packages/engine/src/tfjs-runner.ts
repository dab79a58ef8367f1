/** SwinIR on the tfjs reference model (`SwinIRModel` from @harmoq/swinir) behind the SRRunner interface. */
import * as tf from '@tensorflow/tfjs';
import { SwinIRModel, initBackend, type NCHWArray, type SwinIRConfig } from '@harmoq/swinir';
import { EngineError } from './errors';
import { checkShape, type Shape4 } from './layout';
import type { EngineOptions, SRRunner } from './types';

export class TfjsRunner implements SRRunner {
  readonly engine = 'tfjs' as const;
  readonly scale: number;

  private constructor(
    readonly model: SwinIRModel,
    readonly config: SwinIRConfig,
    readonly description: string,
    private readonly options: EngineOptions,
  ) {
    this.scale = config.upsampler === '' ? 1 : config.upscale;
  }

  /** Selects the backend (global to tfjs) and builds the model, checking the state dict strictly. */
  static async create(options: EngineOptions): Promise<TfjsRunner> {
    const backend = await initBackend(options.backend);
    const model = new SwinIRModel(options.stateDict, options.config);
    return new TfjsRunner(model, model.config, `tfjs ${tf.version.tfjs} ${backend}`, options);
  }

  async forward(input: Float32Array, shape: Shape4): Promise<NCHWArray> {
    checkShape(input, shape, this.config.inChans);
    try {
      const { data, shape: outShape } = this.model.forward({ data: input, shape: [...shape] as [number, number, number, number] }, { hook: this.options.hook });
      return { data, shape: outShape };
    } catch (err) {
      if (err instanceof Error && err.name === 'SwinIRError') throw new EngineError(err.message);
      throw err;
    }
  }

  async dispose(): Promise<void> {
    this.model.dispose();
  }
}
