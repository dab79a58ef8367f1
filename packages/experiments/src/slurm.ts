/**
 * `harmoq exp <grid> --emit slurm`: a Slurm batch setup for a grid, so it runs on a cluster with one cell per
 * array task (`harmoq cell <grid> <index>`) against one shared results folder and tracking store.
 *
 * Dependencies. An eval cell needs its calibration's qparams. Slurm's `aftercorr` pairs task i of one array
 * with task i of another, which fits no grid here (one calibration feeds several evals), and one array per
 * dependency level would hold every eval back until the slowest calibration ends (2dquant takes ~50x longer
 * than minmax). So the cells to run are grouped by the cells they wait for, and each group is one array job
 * depending on exactly those array tasks (`afterok:<job>_<task>`): an eval starts as soon as its own
 * calibration is stored. `--kill-on-invalid-dep=yes` cancels the evals of a calibration that failed instead
 * of leaving them pending forever. The tables job depends on every array with `afterany`, so it runs (and
 * shows what is missing) even when some cells failed.
 *
 * Finished cells are left out when the setup is written; a cell that finishes between writing and running
 * costs nothing (`harmoq cell` says 'already finished'). Each task passes the key it was emitted for, so a
 * changed tree (new cell keys under the same indices) is refused instead of computing another cell.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeFileAtomic } from '@harmoq/atomic-fs';
import { repoRoot } from '@harmoq/data';
import { resolveTrackingUri } from '@harmoq/tracking';
import { ExperimentError } from './errors';
import type { ResolvedGrid } from './run';
import { CellStore } from './store';

export const SCHEDULERS = ['slurm'] as const;
export type Scheduler = (typeof SCHEDULERS)[number];

/** sbatch options for every job of the setup. */
export interface SlurmOptions {
  partition?: string;
  /** Slurm time limit per task: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS. */
  time?: string;
  /** CPUs per task; also the onnxruntime threads of each cell unless `threads` says otherwise. Default 4. */
  cpus?: number;
  /** Memory per node: a number of MB or with a unit K, M, G, T. */
  mem?: string;
  /** More sbatch options, `key=value` or a bare `flag` (`account=proj`, `qos=long`, `exclusive`). */
  extra?: readonly string[];
}

/** What `harmoq cell` needs besides the grid, as the command line gave it. */
export interface SlurmGridFlags {
  /** Experiment name as the user typed it (resolved to the module's name). */
  preset?: string;
  only?: readonly string[];
  set?: readonly string[];
  /** Set HARMOQ_DATA in the jobs (absolute). */
  dataDir?: string;
  resultsDir: string;
  threads?: number;
  tracking: boolean;
  /** MLFLOW_TRACKING_URI for the jobs; undefined leaves ./mlruns in the repository. */
  trackingUri?: string;
}

/** One array job: the grid indices it runs and the (group, index) tasks it waits for. */
export interface SlurmGroup {
  indices: number[];
  /** Grid indices of the cells this group waits for, each run by an earlier group. */
  after: number[];
}

export interface SlurmPlan {
  experiment: string;
  selected: number;
  done: number;
  groups: SlurmGroup[];
  /** Key and label of every cell to run, by grid index. */
  cells: Map<number, { key: string; label: string }>;
}

/** Groups the unfinished selected cells by the unfinished cells they depend on, dependencies first. */
export function planSlurm(grid: ResolvedGrid, isDone: (index: number) => boolean): SlurmPlan {
  const indexOf = new Map(grid.selected.map((c, i) => [c.key, i]));
  const todo = grid.selected.map((_c, i) => i).filter((i) => !isDone(i));
  const todoSet = new Set(todo);
  const level = new Map<number, number>();
  const groups = new Map<string, SlurmGroup>();
  for (const i of todo) {
    // Dependencies come first in grid order, so their level is known.
    const after = grid.selected[i].deps.map((k) => indexOf.get(k)).filter((d): d is number => d !== undefined && todoSet.has(d)).sort((a, b) => a - b);
    level.set(i, after.length === 0 ? 0 : 1 + Math.max(...after.map((d) => level.get(d)!)));
    const id = after.join(',');
    if (!groups.has(id)) groups.set(id, { indices: [], after });
    groups.get(id)!.indices.push(i);
  }
  const groupLevel = (g: SlurmGroup) => level.get(g.indices[0])!;
  const ordered = [...groups.values()].sort((a, b) => groupLevel(a) - groupLevel(b) || a.indices[0] - b.indices[0]);
  return {
    experiment: grid.module.name,
    selected: grid.selected.length,
    done: grid.selected.length - todo.length,
    groups: ordered,
    cells: new Map(todo.map((i) => [i, { key: grid.selected[i].key, label: grid.selected[i].label }])),
  };
}

/** `0,2-5,9`: an sbatch --array list. */
export function arraySpec(indices: readonly number[]): string {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j === i ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** POSIX shell single quoting: safe for any string. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

const TIME = /^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)$/i;
const MEM = /^\d+[KMGT]?$/i;
const PARTITION = /^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$/;
/** Options the setup writes itself, or that have their own flag. */
const RESERVED: Record<string, string> = {
  array: 'set by submit.sh', dependency: 'set by submit.sh', 'kill-on-invalid-dep': 'set by submit.sh', output: 'logs/ per task',
  error: 'logs/ per task', 'job-name': 'names the logs', chdir: 'the jobs cd to the repository', parsable: 'used by submit.sh',
  wrap: 'the jobs are scripts', partition: 'use --slurm-partition', time: 'use --slurm-time', 'cpus-per-task': 'use --slurm-cpus',
  mem: 'use --slurm-mem', 'ntasks': 'one cell is one task',
};

/** `#SBATCH` lines for the options; bad values are an ExperimentError naming the value and what is allowed. */
export function sbatchDirectives(options: SlurmOptions): string[] {
  const lines: string[] = [];
  if (options.partition !== undefined) {
    if (!PARTITION.test(options.partition)) throw new ExperimentError(`--slurm-partition '${options.partition}' is not a partition name (letters, digits, _ . -; several: a,b)`, { value: options.partition });
    lines.push(`--partition=${options.partition}`);
  }
  if (options.time !== undefined) {
    if (!TIME.test(options.time)) {
      throw new ExperimentError(`--slurm-time '${options.time}' is not a Slurm time (formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, UNLIMITED)`, {
        value: options.time, choices: ['MM', 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS', 'UNLIMITED'],
      });
    }
    lines.push(`--time=${options.time}`);
  }
  const cpus = options.cpus ?? 4;
  if (!Number.isInteger(cpus) || cpus <= 0) throw new ExperimentError(`--slurm-cpus '${cpus}' must be a positive integer`, { value: String(cpus) });
  lines.push(`--cpus-per-task=${cpus}`);
  if (options.mem !== undefined) {
    if (!MEM.test(options.mem)) throw new ExperimentError(`--slurm-mem '${options.mem}' is not a Slurm memory size (a number of MB, or with a unit: K, M, G, T, e.g. 8G)`, { value: options.mem, choices: ['K', 'M', 'G', 'T'] });
    lines.push(`--mem=${options.mem}`);
  }
  for (const item of options.extra ?? []) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    const value = eq < 0 ? undefined : item.slice(eq + 1);
    if (!/^[a-z][a-z0-9-]*$/.test(key)) {
      throw new ExperimentError(`--slurm '${item}' is not key=value with an sbatch long option as key (e.g. account=proj, qos=long, exclusive)`, { value: item });
    }
    if (Object.hasOwn(RESERVED, key)) {
      throw new ExperimentError(`--slurm '${item}': '${key}' cannot be set this way (${RESERVED[key]}; written by the setup: ${Object.keys(RESERVED).join(', ')})`, {
        value: key, choices: Object.keys(RESERVED),
      });
    }
    // sbatch reads #SBATCH lines without a shell, so a value with spaces or quotes would not survive.
    if (value !== undefined && (value === '' || !/^[^\s'"\\#]+$/.test(value))) {
      throw new ExperimentError(`--slurm '${item}': the value must be non-empty, without spaces, quotes, backslashes or '#'`, { value: item });
    }
    lines.push(value === undefined ? `--${key}` : `--${key}=${value}`);
  }
  return lines;
}

export interface SlurmScriptsInput {
  plan: SlurmPlan;
  flags: SlurmGridFlags;
  slurm: SlurmOptions;
  /** The repository the jobs cd to (absolute). */
  repoDir: string;
  /** Where the setup is written (absolute); logs/ goes inside. */
  outDir: string;
}

/** The grid options of `harmoq cell`/`harmoq exp`, quoted, as the setup was emitted with them. */
function gridArgs(flags: SlurmGridFlags, threads: number): string[] {
  const args: string[] = [];
  if (flags.preset !== undefined) args.push('--preset', flags.preset);
  for (const o of flags.only ?? []) args.push('--only', o);
  for (const s of flags.set ?? []) args.push('--set', s);
  args.push('--results', flags.resultsDir, '--threads', String(threads));
  if (!flags.tracking) args.push('--no-tracking');
  return args;
}

function environmentLines(input: SlurmScriptsInput): string[] {
  const lines = [`cd ${shellQuote(input.repoDir)}`];
  if (input.flags.dataDir !== undefined) lines.push(`export HARMOQ_DATA=${shellQuote(input.flags.dataDir)}`);
  if (input.flags.tracking && input.flags.trackingUri !== undefined) lines.push(`export MLFLOW_TRACKING_URI=${shellQuote(input.flags.trackingUri)}`);
  return lines;
}

/** The files of the setup, by name: cell.sbatch, tables.sbatch, submit.sh, cells.tsv. Pure. */
export function slurmScripts(input: SlurmScriptsInput): Record<string, string> {
  const { plan, flags, slurm } = input;
  const directives = sbatchDirectives(slurm);
  const threads = flags.threads ?? slurm.cpus ?? 4;
  const name = plan.experiment;
  const logs = path.join(input.outDir, 'logs');
  const header = (what: string) => [
    '#!/bin/bash',
    `# harmoq ${name}: ${what}. Written by \`harmoq exp ${name} --emit slurm\`; emit again rather than edit.`,
  ];
  const sbatch = (jobName: string, output: string) => [
    `#SBATCH --job-name=${jobName}`,
    ...directives.map((d) => `#SBATCH ${d}`),
    `#SBATCH --output=${path.join(logs, output)}`,
  ];
  const grid = gridArgs(flags, threads).map(shellQuote).join(' ');
  const keys = [...plan.cells].map(([i, c]) => `  [${i}]=${c.key}`);

  const cellScript = [
    ...header('one cell per array task (the task id is the cell index of `harmoq exp --dry-run`); submitted by submit.sh'),
    ...sbatch(`harmoq-${name}`, '%x-%A_%a.out'),
    'set -euo pipefail',
    ': "${SLURM_ARRAY_TASK_ID:?cell.sbatch is an array job: submit it with submit.sh}"',
    '# The key each index named when this was written; `harmoq cell` refuses an index that now names another cell.',
    'KEYS=(',
    ...keys,
    ')',
    ...environmentLines(input),
    `exec npx harmoq cell ${shellQuote(name)} "$SLURM_ARRAY_TASK_ID" --expect-key "\${KEYS[$SLURM_ARRAY_TASK_ID]}" ${grid}`,
    '',
  ].join('\n');

  const tablesScript = [
    ...header('the rows and tables from the stored cells, after every cell job has ended'),
    ...sbatch(`harmoq-${name}-tables`, '%x-%j.out'),
    'set -uo pipefail',
    ...environmentLines(input),
    '# Rows file, env.json and tables for this grid (exit 1 when a selected cell has no result), then every',
    '# table, figure and the comparison crops.',
    `npx harmoq exp ${shellQuote(name)} --tables-only ${grid}`,
    'status=$?',
    `npx harmoq tables --results ${shellQuote(flags.resultsDir)} || status=$?`,
    'exit $status',
    '',
  ].join('\n');

  const submit: string[] = [
    '#!/bin/bash',
    `# harmoq ${name}: submits ${plan.cells.size} cells (${plan.done} of ${plan.selected} selected are finished) in ${plan.groups.length} array job(s),`,
    '# each waiting for the array tasks that compute its dependencies, then the tables job. Run it on a login node:',
    '# bash submit.sh. The job ids go to jobs.txt (scancel $(cat jobs.txt) cancels everything).',
    'set -euo pipefail',
    'here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
    'mkdir -p "$here/logs"',
    ': > "$here/jobs.txt"',
    'submit() { local id; id=$(sbatch --parsable "$@"); id=${id%%;*}; echo "$id" >> "$here/jobs.txt"; echo "$id"; }',
  ];
  const jobVar = (g: number) => `job${g}`;
  const groupOf = new Map<number, number>();
  plan.groups.forEach((g, gi) => {
    for (const i of g.indices) groupOf.set(i, gi);
    const spec = arraySpec(g.indices);
    const dependency = g.after.length === 0 ? ''
      : ` --dependency=afterok:${g.after.map((d) => `\${${jobVar(groupOf.get(d)!)}}_${d}`).join(':')} --kill-on-invalid-dep=yes`;
    const labels = g.indices.map((i) => plan.cells.get(i)!.label);
    submit.push(`# ${labels.length} cell${labels.length > 1 ? 's' : ''}: ${labels.slice(0, 4).join('; ')}${labels.length > 4 ? '; ...' : ''}`);
    submit.push(`${jobVar(gi)}=$(submit --array=${spec}${dependency} "$here/cell.sbatch")`);
    submit.push(`echo "cells ${spec}: job $${jobVar(gi)}"`);
  });
  const allJobs = plan.groups.map((_g, gi) => `\${${jobVar(gi)}}`);
  submit.push(`tables=$(submit${allJobs.length ? ` --dependency=afterany:${allJobs.join(':')}` : ''} "$here/tables.sbatch")`);
  submit.push('echo "tables: job $tables"', '');

  const tsv = ['index\tkey\tlabel\tafter', ...[...plan.cells].map(([i, c]) => {
    const group = plan.groups.find((g) => g.indices.includes(i))!;
    return `${i}\t${c.key}\t${c.label}\t${group.after.join(',')}`;
  }), ''].join('\n');

  return { 'cell.sbatch': cellScript, 'tables.sbatch': tablesScript, 'submit.sh': submit.join('\n'), 'cells.tsv': tsv };
}

export interface EmitSlurmOptions {
  grid: ResolvedGrid;
  flags: SlurmGridFlags;
  slurm: SlurmOptions;
  /** Default: `<repo>/out/slurm/<experiment>`. */
  outDir?: string;
  repoDir?: string;
}

export interface SlurmSetup {
  outDir: string;
  files: string[];
  plan: SlurmPlan;
}

/**
 * Writes the setup. Every file is written atomically and submit.sh last (it is removed first), so a setup
 * with a submit.sh is complete; logs/ and jobs.txt of earlier submissions are kept.
 */
export function emitSlurm(options: EmitSlurmOptions): SlurmSetup {
  const repoDir = path.resolve(options.repoDir ?? repoRoot());
  const outDir = path.resolve(options.outDir ?? path.join(repoDir, 'out', 'slurm', options.grid.module.name));
  const flags = { ...options.flags, resultsDir: path.resolve(options.flags.resultsDir) };
  const store = new CellStore(flags.resultsDir);
  const plan = planSlurm(options.grid, (i) => store.isDone(options.grid.selected[i]));
  const files = slurmScripts({ plan, flags, slurm: options.slurm, repoDir, outDir });
  // The log paths go into #SBATCH lines, which sbatch reads without a shell.
  if (!/^[^\s'"\\#]+$/.test(outDir)) throw new ExperimentError(`--out '${outDir}': the path must have no spaces, quotes, backslashes or '#' (sbatch reads the log paths unquoted)`, { value: outDir });
  if (fs.existsSync(outDir) && !fs.statSync(outDir).isDirectory()) {
    throw new ExperimentError(`--out '${outDir}' exists and is not a folder`, { value: outDir });
  }
  fs.mkdirSync(path.join(outDir, 'logs'), { recursive: true });
  fs.rmSync(path.join(outDir, 'submit.sh'), { force: true });
  const order = Object.keys(files).filter((f) => f !== 'submit.sh').concat('submit.sh');
  const written = order.map((name) => {
    const file = path.join(outDir, name);
    writeFileAtomic(file, files[name]);
    if (name.endsWith('.sh') || name.endsWith('.sbatch')) fs.chmodSync(file, 0o755);
    return file;
  });
  return { outDir, files: written, plan };
}

/** MLFLOW_TRACKING_URI for the jobs: a server as given, a local store as an absolute file: URI (the jobs cd elsewhere). */
export function jobTrackingUri(raw: string | undefined, cwd: string = process.cwd()): string | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const target = resolveTrackingUri(raw, cwd);
  return target.kind === 'server' ? target.uri : pathToFileURL(target.root).href;
}
