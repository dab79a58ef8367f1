import { Command } from 'commander';
import { readImage, writePng } from '@harmoq/data';
import { choiceInt } from '../errors';
import { openModel, modelOptions, type ModelFlags } from '../model';

export function upscaleCommand(): Command {
  return modelOptions(
    new Command('upscale')
      .description("super-resolve one of your own images (PNG in, PNG out)")
      .argument('<input>', 'input image (PNG, or anything sharp reads)')
      .requiredOption('-o, --output <file>', 'output PNG'),
  ).action(async (input: string, flags: ModelFlags & { output: string }) => {
    const scale = choiceInt('--scale', flags.scale, [2, 3, 4, 8]);
    const lr = await readImage(input);
    const model = await openModel(flags, scale);
    try {
      const started = Date.now();
      const sr = await model.superResolve(lr);
      await writePng(flags.output, sr);
      process.stderr.write(`${input} ${lr.width}x${lr.height} -> ${flags.output} ${sr.width}x${sr.height} ` +
        `(${((Date.now() - started) / 1000).toFixed(2)} s, ${model.backend})\n`);
    } finally {
      await model.dispose();
    }
  });
}
