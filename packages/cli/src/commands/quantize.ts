import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import { dataDir } from '@harmoq/data';
import {
  METHOD_NAMES, PRESET_NAMES, PTQ_METHODS, SUPPORTED_BITS, quantizeModel, resolveRequest, writeQParams, type ProgressUpdate,
} from '@harmoq/quant';
import { ARCH_NAMES } from '@harmoq/swinir';
import { choiceInt, positiveInt, UsageError } from '../errors';
import { loadCheckedModel } from '../model';

interface QuantizeFlags {
  arch?: string;
  scale: string;
  weights: string;
  method: string;
  wbits: string;
  abits: string;
  preset: string;
  seed?: string;
  data?: string;
  set: string[];
  out: string;
  threads?: string;
}

/** One bar per calibration stage on stderr: steps, and the loss when the method reports one. */
function stageProgress(): { update: (u: ProgressUpdate) => void; stop: () => void } {
  let bar: SingleBar | undefined;
  let stage = '';
  return {
    update(u) {
      // A one-step update with a note is a stage's summary: printed whole (a bar line is cut at the terminal width).
      if (u.total === 1 && u.step === 1 && u.note) {
        bar?.stop();
        bar = undefined;
        stage = '';
        process.stderr.write(`${u.stage.padEnd(11)} ${u.note}\n`);
        return;
      }
      if (u.stage !== stage) {
        bar?.stop();
        stage = u.stage;
        bar = new SingleBar({
          stream: process.stderr, format: `${stage.padEnd(11)} [{bar}] {value}/{total} {eta_formatted} {info}`,
          noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 5000, hideCursor: true, clearOnComplete: false,
        });
        bar.start(u.total, 0, { info: '' });
      }
      bar!.setTotal(u.total);
      bar!.update(u.step, { info: u.note ?? (u.loss === undefined ? '' : `loss ${u.loss.toExponential(3)}`) });
    },
    stop: () => bar?.stop(),
  };
}

export function quantizeCommand(): Command {
  const methods = Object.values(PTQ_METHODS).map((m) => `${m.name}: ${m.summary}`).join('; ');
  return new Command('quantize')
    .description(`calibrate post-training quantization bounds and write them as a qparams file (methods: ${methods})`)
    .requiredOption('--weights <file>', 'SwinIR checkpoint (.pth with params/params_ema, or .safetensors)')
    .requiredOption('--scale <s>', 'upscale factor (2|3|4|8); checked against the checkpoint')
    .option('--arch <name>', `architecture family, checked against the checkpoint (${ARCH_NAMES.join('|')}); inferred if omitted`)
    .requiredOption('--method <name>', `PTQ method (${METHOD_NAMES.join('|')})`)
    .requiredOption('--wbits <b>', `weight bits (${SUPPORTED_BITS.join('|')})`)
    .requiredOption('--abits <b>', `activation bits (${SUPPORTED_BITS.join('|')})`)
    .option('--preset <name>', `calibration budget (${PRESET_NAMES.join('|')})`, 'quick')
    .option('--seed <n>', 'seed for the calibration patches and any random choice (default 3407)')
    .option('--data <dir>', 'data folder holding calibration/*.png (default: $HARMOQ_DATA)')
    .option('--set <key=value>', 'override a setting: a method option, quantizer.* or calibration.* (repeatable)',
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .requiredOption('--out <file>', 'qparams file to write (atomic)')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .action(async (flags: QuantizeFlags) => {
      const scale = choiceInt('--scale', flags.scale, [2, 3, 4, 8]);
      const seed = flags.seed === undefined ? undefined : Number(flags.seed);
      if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0)) throw new UsageError(`--seed '${flags.seed}' must be a non-negative integer`);
      const wbits = choiceInt('--wbits', flags.wbits, SUPPORTED_BITS);
      const abits = choiceInt('--abits', flags.abits, SUPPORTED_BITS);
      const request = resolveRequest({ method: flags.method, wbits, abits, preset: flags.preset, seed, set: flags.set });
      const threads = flags.threads === undefined ? undefined : positiveInt('--threads', flags.threads);
      const outDir = path.dirname(path.resolve(flags.out));
      if (!fs.existsSync(outDir)) throw new UsageError(`--out '${flags.out}': folder ${outDir} does not exist`);
      const root = dataDir(flags.data);
      if (!fs.existsSync(root)) throw new UsageError(`no data folder: pass --data <dir> or set HARMOQ_DATA (looked in ${root})`);
      const model = loadCheckedModel(flags, scale);
      const progress = stageProgress();
      let qparams;
      try {
        qparams = await quantizeModel(
          { arch: model.arch, config: model.config, stateDict: model.stateDict, checkpoint: { file: flags.weights, sha256: model.sha256 } },
          request, { dataDir: root, threads, onProgress: progress.update },
        );
      } finally {
        progress.stop();
      }
      await writeQParams(flags.out, qparams);
      process.stdout.write(
        `${qparams.method} W${qparams.wbits}A${qparams.abits} x${scale}: ${Object.keys(qparams.bounds).length} quantizers, ` +
          `${qparams.calibration.count} patches of ${qparams.calibration.patchSize}x${qparams.calibration.patchSize}, ` +
          `${qparams.seconds.toFixed(1)} s -> ${flags.out}\n`,
      );
    });
}
