import { checkArchitecture, type LoadSwinIROptions, expectedFor } from '@harmoq/swinir';
import { loadStateDict } from '@harmoq/torch-io';
import { EngineError } from './errors';
import { OnnxRunner } from './onnx-runner';
import { TfjsRunner } from './tfjs-runner';
import { ENGINE_NAMES, type EngineOptions, type SRRunner } from './types';

/**
 * A SwinIR runner on the chosen engine: 'onnx' (onnxruntime-node, the fast path) or 'tfjs' (the
 * differentiable reference). Both compute the official forward; see `SRRunner.forward`.
 */
export async function createEngine(options: EngineOptions): Promise<SRRunner> {
  switch (options.engine) {
    case 'onnx':
      return new OnnxRunner(options);
    case 'tfjs':
      return TfjsRunner.create(options);
    default:
      throw new EngineError(`unknown engine '${String(options.engine)}' (choices: ${ENGINE_NAMES.join(', ')})`);
  }
}

export interface LoadRunnerOptions extends Omit<EngineOptions, 'config' | 'stateDict'>, LoadSwinIROptions {}

/** Reads a checkpoint, checks it against `arch`/`scale`/`config` (or infers them) and creates a runner. */
export async function loadRunner(file: string, options: LoadRunnerOptions): Promise<SRRunner> {
  const expected = expectedFor(options);
  const { stateDict } = loadStateDict(file);
  const config = checkArchitecture(stateDict, expected, undefined, file);
  return createEngine({ ...options, config, stateDict });
}
