import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { BENCHMARKS, dataDir, writeFileAtomic } from '@harmoq/data';
import { evaluate } from '@harmoq/engine';
import { choice, choiceInt, UsageError } from '../errors';

const BENCHMARK_NAMES = Object.keys(BENCHMARKS);
import { progressBar } from '../progress';
import { openModel, modelOptions, type ModelFlags } from '../model';

interface EvalFlags extends ModelFlags {
  dataset: string;
  data?: string;
  saveSr?: string;
  json?: string;
  quant?: string;
}

export function evalCommand(): Command {
  return modelOptions(
    new Command('eval')
      .description('evaluate a SwinIR checkpoint on a benchmark set with the official SwinIR test protocol')
      .requiredOption('--dataset <name>', `benchmark set (${BENCHMARK_NAMES.join('|')})`)
      .option('--data <dir>', 'data folder with benchmarks/<Set>/HR and LR_bicubic (default: $HARMOQ_DATA)')
      .option('--save-sr <dir>', 'write the SR images as PNG into this folder')
      .option('--json <file>', 'write the results as JSON (atomic)')
      .option('--quant <qparams>', 'run fake-quantized with the bounds of a qparams file from `harmoq quantize`'),
  ).action(async (flags: EvalFlags) => {
    const scale = choiceInt('--scale', flags.scale, [2, 3, 4, 8]);
    const dataset = choice('--dataset', flags.dataset, BENCHMARK_NAMES);
    const root = dataDir(flags.data);
    if (!fs.existsSync(root)) {
      throw new UsageError(`no data folder: pass --data <dir> or set HARMOQ_DATA (looked in ${root})`);
    }
    const model = await openModel(flags, scale, flags.quant);
    try {
      let bar: ReturnType<typeof progressBar> | undefined;
      const report = await evaluate({
        dataset, scale, dataDir: root, saveSrDir: flags.saveSr,
        upscale: (lr) => model.superResolve(lr),
        onImage: (done, total, row) => {
          bar ??= progressBar(`eval ${dataset} x${scale}`, total);
          bar.tick(`${row.name} ${row.psnr_y.toFixed(2)} dB`);
          if (done === total) bar.stop();
        },
      });
      const out = {
        model: path.resolve(flags.weights), weights_sha256: model.sha256, arch: model.arch,
        engine: model.engine, backend: model.backend, threads: model.threads,
        ...report,
        ...model.quant,
      };
      if (flags.json) await writeFileAtomic(flags.json, JSON.stringify(out, null, 2) + '\n');
      const label = model.quant ? ` ${model.quant.method} W${model.quant.wbits}A${model.quant.abits}` : '';
      process.stdout.write(
        `${dataset} x${scale}${label}: PSNR-Y ${report.psnr_y.toFixed(4)} dB, SSIM-Y ${report.ssim_y.toFixed(4)}; ` +
          `PSNR ${report.psnr.toFixed(4)} dB, SSIM ${report.ssim.toFixed(4)} (${report.seconds.toFixed(1)} s, ${model.backend})\n`,
      );
    } finally {
      await model.dispose();
    }
  });
}
