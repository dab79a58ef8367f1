import * as tf from '@tensorflow/tfjs';
import { loadStateDict, type CheckpointFormat, type StateDict } from '@harmoq/torch-io';
import { archFamily, checkArchitecture } from './architecture';
import { ARCH_NAMES, type ArchName, type SwinIRConfig } from './config';
import { ArchitectureError } from './errors';
import { SwinIRModel } from './model';

export interface LoadSwinIROptions {
  /** Pins the family (`--arch`): embed dim, depths, heads, window, MLP ratio, head type. */
  arch?: ArchName;
  /** Pins the upscale factor (`--scale`). */
  scale?: number;
  /** Pins every field (strict, as the official `load_state_dict(strict=True)` with a known config). */
  config?: SwinIRConfig;
}

export interface CheckpointInfo {
  file: string;
  format: CheckpointFormat;
  /** Top-level key of the .pth that held the weights ('params', 'params_ema', ...), null for a bare state dict. */
  key: string | null;
  sha256: string;
}

export interface LoadedSwinIR {
  model: SwinIRModel;
  config: SwinIRConfig;
  checkpoint: CheckpointInfo;
}

/** What `--arch`/`--scale` (or an explicit config) require of a checkpoint. */
export function expectedFor(options: LoadSwinIROptions): Partial<SwinIRConfig> {
  if (options.arch !== undefined && !ARCH_NAMES.includes(options.arch)) {
    throw new ArchitectureError(`unknown arch '${options.arch}' (choices: ${ARCH_NAMES.join(', ')})`);
  }
  if (options.scale !== undefined && !(Number.isInteger(options.scale) && options.scale >= 1)) {
    throw new ArchitectureError(`scale ${options.scale} is not a positive integer`);
  }
  const expected: Partial<SwinIRConfig> = { ...(options.config ?? {}) };
  if (options.arch) Object.assign(expected, archFamily(options.arch));
  if (options.scale !== undefined) expected.upscale = options.scale;
  return expected;
}

/**
 * Checks a state dict against `options` (infers whatever is not pinned) and builds the model.
 * Refuses with an ArchitectureError naming every mismatch.
 */
export function swinIRFromStateDict(stateDict: StateDict, options: LoadSwinIROptions = {}, source?: string): SwinIRModel {
  const archName = options.arch ? `${options.arch}${options.scale ? ` x${options.scale}` : ''}` : options.scale ? `x${options.scale}` : undefined;
  const config = checkArchitecture(stateDict, expectedFor(options), archName, source);
  return new SwinIRModel(stateDict, config, source);
}

/** Loads a .pth/.safetensors SwinIR checkpoint onto the current tfjs backend (see initBackend). */
export async function loadSwinIR(file: string, options: LoadSwinIROptions = {}): Promise<LoadedSwinIR> {
  expectedFor(options); // bad options fail before the file is read
  const loaded = loadStateDict(file);
  await tf.ready();
  const model = swinIRFromStateDict(loaded.stateDict, options, file);
  return {
    model,
    config: model.config,
    checkpoint: { file, format: loaded.format, key: loaded.key, sha256: loaded.sha256 },
  };
}
