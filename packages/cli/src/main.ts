import { Command, CommanderError } from 'commander';
import { exitCodeFor } from './errors';
import { evalCommand } from './commands/eval';
import { upscaleCommand } from './commands/upscale';
import { convertCommand } from './commands/convert';
import { quantizeCommand } from './commands/quantize';
import { expCommand } from './commands/exp';
import { cellCommand } from './commands/cell';
import { trackingCommand } from './commands/tracking';
import { tablesCommand } from './commands/tables';
import { exportCommand } from './commands/export';

export function buildProgram(): Command {
  const program = new Command('harmoq')
    .description('post-training quantization of super-resolution models (HarmoQ reproduction)')
    .option('--verbose', 'print stack traces on errors')
    .showSuggestionAfterError(true)
    .exitOverride();
  for (const cmd of [evalCommand(), upscaleCommand(), convertCommand(), quantizeCommand(), expCommand(), cellCommand(), trackingCommand(), tablesCommand(), exportCommand()]) {
    program.addCommand(cmd.exitOverride().showSuggestionAfterError(true).configureOutput(QUIET_ERRORS));
  }
  return program.configureOutput(QUIET_ERRORS);
}

// Commander's own error text is printed once by run(), as one line.
const QUIET_ERRORS = { writeErr: () => {} };

/** Runs the CLI and returns the exit code: 0 ok, 2 bad input or usage, 1 a failed run. */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      if (err.code === 'commander.help') return 0;
      process.stderr.write(`harmoq: ${err.message.replace(/^error: /, '')}\n`);
      return 2;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`harmoq: ${message}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    return exitCodeFor(err);
  }
}
