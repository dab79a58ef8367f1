import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { dataDir as resolveDataDir } from '@harmoq/data';
import { buildTables, defaultResultsDir, TABLE_EXPERIMENTS } from '@harmoq/experiments';
import { asUsage } from './exp';

interface TablesFlags {
  results?: string;
  only?: string;
  data?: string;
  crops: boolean;
}

const shortPath = (file: string) => {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file;
};

/** `harmoq tables`: every table and figure rebuilt from stored results (rows files and cells), never from the grid. */
export function tablesCommand(): Command {
  return new Command('tables')
    .description('rebuild the LaTeX/Markdown/CSV tables and the figures from stored results, byte-identically on a rerun')
    .option('--results <dir>', `results folder (default: ${defaultResultsDir()})`)
    .option('--only <experiment>', `one experiment (${TABLE_EXPERIMENTS.join('|')})`)
    .option('--data <dir>', 'data folder for the comparison crops (default: $HARMOQ_DATA)')
    .option('--no-crops', 'skip the comparison crops (they run the model once per method on one image, then are reused)')
    .action(async (flags: TablesFlags) => {
      const resultsDir = path.resolve(flags.results ?? defaultResultsDir());
      const candidate = resolveDataDir(flags.data);
      const dataDir = fs.existsSync(candidate) ? candidate : null;
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const reports = await asUsage(() => buildTables({
        resultsDir, only: flags.only, log,
        crops: flags.crops && dataDir ? { dataDir } : null,
      }));
      for (const r of reports) {
        if (r.origin === null) {
          process.stdout.write(`${r.experiment}: no stored results in ${shortPath(resultsDir)}\n`);
          continue;
        }
        process.stdout.write(`${r.experiment}: from ${r.origin}, wrote ${r.files.length} files in ${shortPath(path.join(resultsDir, r.experiment))}\n`);
        if (flags.crops && !dataDir) process.stdout.write(`  crops skipped: no data folder (pass --data or set HARMOQ_DATA)\n`);
        if (r.cropsSkipped) process.stdout.write(`  crops skipped: ${r.cropsSkipped}\n`);
      }
    });
}
