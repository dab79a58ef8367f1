import { Command } from 'commander';
import { convertCheckpoint } from '@harmoq/torch-io';

export function convertCommand(): Command {
  return new Command('convert')
    .description('convert a PyTorch .pth checkpoint to safetensors (parsed safely, never unpickled)')
    .argument('<input>', 'checkpoint (.pth)')
    .argument('<output>', 'output .safetensors file (written atomically)')
    .action(async (input: string, output: string) => {
      const info = await convertCheckpoint(input, output);
      process.stderr.write(`${input} -> ${output}: ${info.entries} tensors, source sha256 ${info.sha256}\n`);
    });
}
