import * as fs from 'node:fs';
import { Command } from 'commander';
import type { Image } from '@harmoq/data';
import { createEngine, ENGINE_NAMES, superResolve, type EngineName, type EngineOptions } from '@harmoq/engine';
import { checkQParamsFor, qparamsPlan, quantizedEngineOptions, readQParams } from '@harmoq/quant';
import { ARCH_NAMES, BACKEND_NAMES, checkArchitecture, expectedFor, type ArchName, type BackendName, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict, type StateDict } from '@harmoq/torch-io';
import { choice, positiveInt, UsageError } from './errors';

export const ENGINE_CHOICES = ENGINE_NAMES;
export const BACKEND_CHOICES = BACKEND_NAMES;

/** Flags shared by every command that runs a model. */
export interface ModelFlags {
  arch?: string;
  scale: string;
  weights: string;
  engine: string;
  backend?: string;
  threads?: string;
  tile?: string;
}

export function modelOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--weights <file>', 'SwinIR checkpoint (.pth with params/params_ema, or .safetensors)')
    .requiredOption('--scale <s>', 'upscale factor (2|3|4|8); checked against the checkpoint')
    .option('--arch <name>', `architecture family, checked against the checkpoint (${ARCH_NAMES.join('|')}); inferred if omitted`)
    .option('--engine <name>', `inference engine (${ENGINE_NAMES.join('|')})`, 'onnx')
    .option('--backend <name>', `tfjs backend for --engine tfjs (${BACKEND_NAMES.join('|')}); default: the first that loads`)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .option('--tile <n>', 'tiled inference with this tile size (a multiple of the window), overlap 32');
}

export interface CheckedModel {
  arch: string;
  config: SwinIRConfig;
  stateDict: StateDict;
  sha256: string;
}

/** Loads the checkpoint and checks it against --arch/--scale (the family is inferred when --arch is omitted). */
export function loadCheckedModel(flags: Pick<ModelFlags, 'arch' | 'weights'>, scale: number): CheckedModel {
  const arch = flags.arch === undefined ? undefined : choice('--arch', flags.arch, ARCH_NAMES) as ArchName;
  if (!fs.existsSync(flags.weights)) throw new UsageError(`--weights '${flags.weights}': no such file`);
  const loaded = loadStateDict(flags.weights);
  const config = checkArchitecture(loaded.stateDict, expectedFor({ arch, scale }), arch ? `${arch} x${scale}` : `x${scale}`, flags.weights);
  return {
    arch: arch ?? (config.embedDim === 60 ? 'swinir-light' : config.upsampler === 'pixelshuffle' ? 'swinir-classical' : 'swinir-custom'),
    config, stateDict: loaded.stateDict, sha256: loaded.sha256,
  };
}

/** What eval reports about a model run with a qparams file. */
export interface QuantInfo {
  method: string;
  wbits: number;
  abits: number;
}

export interface OpenModel {
  arch: string;
  sha256: string;
  quant?: QuantInfo;
  engine: EngineName;
  backend: string;
  threads?: number;
  superResolve(lr: Image): Promise<Image>;
  dispose(): Promise<void>;
}

/**
 * Validates the flags, loads and checks the checkpoint, and starts the chosen engine; with `quantFile`, the
 * model runs fake-quantized with that qparams file's bounds (refused if made for another model).
 */
export async function openModel(flags: ModelFlags, scale: number, quantFile?: string): Promise<OpenModel> {
  const engine = choice('--engine', flags.engine, ENGINE_NAMES);
  if (flags.arch !== undefined) choice('--arch', flags.arch, ARCH_NAMES);
  const backend = flags.backend === undefined ? undefined : choice('--backend', flags.backend, BACKEND_NAMES) as BackendName;
  if (backend && engine !== 'tfjs') throw new UsageError(`--backend ${backend} needs --engine tfjs (the onnx engine runs onnxruntime)`);
  const threads = flags.threads === undefined ? undefined : positiveInt('--threads', flags.threads);
  const tile = flags.tile === undefined ? undefined : positiveInt('--tile', flags.tile);
  const qparams = quantFile === undefined ? undefined : readQParams(quantFile);
  const model = loadCheckedModel(flags, scale);
  let options: Pick<EngineOptions, 'stateDict' | 'sites' | 'hook'> = { stateDict: model.stateDict };
  if (qparams) {
    checkQParamsFor(qparams, { arch: model.arch, scale, config: model.config, sha256: model.sha256, file: flags.weights }, quantFile!);
    const { plan, bounds } = qparamsPlan(qparams, quantFile);
    options = quantizedEngineOptions(plan, bounds, model.stateDict, engine);
  }
  const runner = await createEngine({ engine, config: model.config, threads, backend, ...options });
  return {
    arch: model.arch,
    sha256: model.sha256,
    quant: qparams && { method: qparams.method, wbits: qparams.wbits, abits: qparams.abits },
    engine,
    backend: runner.description,
    threads,
    superResolve: (lr) => superResolve(runner, lr, { tile }),
    dispose: () => runner.dispose(),
  };
}
