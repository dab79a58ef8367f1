import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { dataDir as resolveDataDir, repoRoot } from '@harmoq/data';
import { buildTables, defaultResultsDir, TABLE_EXPERIMENTS, updateTableBlocks } from '@harmoq/experiments';
import { asUsage } from './exp';

interface TablesFlags {
  results?: string;
  only?: string;
  data?: string;
  crops: boolean;
  /** A file, false for --no-readme, undefined for the default. */
  readme?: string | false;
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
    .option('--readme <file>', 'refill the <!-- harmoq tables: FILE --> blocks of this Markdown file (default: README.md with the default results folder)')
    .option('--no-readme', 'leave README.md alone')
    .action(async (flags: TablesFlags) => {
      const resultsDir = path.resolve(flags.results ?? defaultResultsDir());
      const candidate = resolveDataDir(flags.data);
      const dataDir = fs.existsSync(candidate) ? candidate : null;
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const reports = await asUsage(() => buildTables({
        resultsDir, only: flags.only, log,
        crops: flags.crops && dataDir ? { dataDir } : null,
      }));
      const readme = flags.readme === false ? null
        : flags.readme !== undefined ? path.resolve(flags.readme)
          : resultsDir === path.resolve(defaultResultsDir()) ? path.join(repoRoot(), 'README.md') : null;
      if (readme && updateTableBlocks(readme, resultsDir)) process.stdout.write(`updated the tables in ${shortPath(readme)}\n`);
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
