/**
 * Experiment modules and how a command line becomes a grid: the module's defaults for the preset, then
 * `--set a.b=c` overrides checked against its zod schema, then `--only key=value` filters on the grid axes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '@harmoq/atomic-fs';
import { nearest } from '@harmoq/quant';
import type { Cell } from './cells';
import { ExperimentError } from './errors';
import type { CellStore } from './store';

export const GRID_PRESETS = ['quick', 'paper'] as const;
export type GridPreset = (typeof GRID_PRESETS)[number];

export interface GridContext {
  /** Data folder (benchmarks/, calibration/, weights/). */
  dataDir: string;
}

export interface AggregateContext {
  store: CellStore;
  /** `<results>/<experiment name>/`. */
  outDir: string;
}

/**
 * Writes an experiment's rows: `<name>.csv` and the rows file `<name>.json` ({ experiment, config, cells: done and
 * missing counts, ...body }), atomically, in `ctx.outDir`. Returns both paths.
 */
export function writeRowsFiles(
  name: string, config: unknown, grid: readonly Cell[], ctx: AggregateContext, csv: string, body: Record<string, unknown>,
): string[] {
  const done = grid.filter((c) => ctx.store.isDone(c)).length;
  fs.mkdirSync(ctx.outDir, { recursive: true });
  const csvFile = path.join(ctx.outDir, `${name}.csv`);
  const jsonFile = path.join(ctx.outDir, `${name}.json`);
  writeFileAtomic(csvFile, csv);
  const file = { experiment: name, config, cells: { total: grid.length, done, missing: grid.length - done }, ...body };
  writeFileAtomic(jsonFile, JSON.stringify(file, null, 2) + '\n');
  return [csvFile, jsonFile];
}

/** One paper table or figure. `C` is its config; everything in it is checked by `schema`. */
export interface ExperimentModule<C extends Record<string, unknown> = Record<string, unknown>> {
  name: string;
  aliases: readonly string[];
  description: string;
  schema: z.ZodType<C>;
  defaults(preset: GridPreset): C;
  /** Every cell of the grid, dependencies before dependents, cheapest first. */
  cells(config: C, ctx: GridContext): Cell[];
  /** Writes the tables from stored cells only; returns the files written. */
  aggregate?(config: C, cells: readonly Cell[], ctx: AggregateContext): Promise<string[]>;
}

export type AnyExperiment = ExperimentModule<Record<string, unknown>>;

/** Defines a module with its config type checked, stored untyped in the registry. */
export function defineExperiment<C extends Record<string, unknown>>(module: ExperimentModule<C>): AnyExperiment {
  return module as unknown as AnyExperiment;
}

/** A `--set` value for a scalar schema: number, boolean or string as the schema wants. */
function coerce(schema: z.ZodType, raw: string): unknown {
  const type = schema.def.type;
  if (type === 'number') return raw.trim() === '' ? raw : Number(raw);
  if (type === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : raw;
  if (type === 'union' || type === 'unknown') {
    if (raw === 'true' || raw === 'false') return raw === 'true';
    return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return raw;
}

function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
  if (issue.code === 'unrecognized_keys') return `${where}unknown key ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  return `${where}${issue.message}`;
}

/**
 * Applies one `a.b=c` to a config. Keys walk the schema's objects (a record takes the rest of the key as one
 * entry); a list field takes a comma-separated value. Unknown keys name the keys that exist there.
 */
export function applySet<C extends Record<string, unknown>>(schema: z.ZodType<C>, config: C, setting: string): C {
  const eq = setting.indexOf('=');
  if (eq <= 0) throw new ExperimentError(`--set '${setting}' is not key=value`, { value: setting });
  const key = setting.slice(0, eq).trim();
  const raw = setting.slice(eq + 1).trim();
  const parts = key.split('.');
  const out = structuredClone(config) as Record<string, unknown>;
  let node: Record<string, unknown> = out;
  let shape: z.ZodType = schema as z.ZodType;
  for (let i = 0; i < parts.length; i++) {
    const def = shape.def as { type: string; shape?: Record<string, z.ZodType>; valueType?: z.ZodType };
    if (def.type === 'record') {
      const entry = parts.slice(i).join('.');
      node[entry] = coerce(def.valueType!, raw);
      break;
    }
    const fields = def.type === 'object' ? def.shape! : {};
    const name = parts[i];
    if (!Object.hasOwn(fields, name)) {
      const here = parts.slice(0, i).join('.');
      const choices = Object.keys(fields).map((k) => (here ? `${here}.${k}` : k));
      const guess = nearest(parts.slice(0, i + 1).join('.'), choices);
      throw new ExperimentError(
        `unknown --set key '${key}' (${guess ? `did you mean '${guess}'? ` : ''}keys: ${choices.join(', ')})`,
        { value: key, choices },
      );
    }
    const field = fields[name];
    if (i === parts.length - 1) {
      const fdef = field.def as { type: string; element?: z.ZodType };
      if (fdef.type === 'object' || fdef.type === 'record') {
        throw new ExperimentError(`--set key '${key}' is a group; set one of its keys (${key}.<name>=value)`, { value: key });
      }
      node[name] = fdef.type === 'array'
        ? raw.split(',').map((v) => v.trim()).filter((v) => v !== '').map((v) => coerce(fdef.element!, v))
        : coerce(field, raw);
    } else {
      node[name] = { ...(node[name] as Record<string, unknown>) };
      node = node[name] as Record<string, unknown>;
      shape = field;
    }
  }
  const parsed = schema.safeParse(out);
  if (!parsed.success) throw new ExperimentError(`--set ${key}=${raw}: ${describeIssue(parsed.error)}`, { value: setting });
  return parsed.data;
}

/** `--only` filters: axis name -> accepted values. */
export type OnlyFilter = Map<string, Set<string>>;

/**
 * Parses `--only key=value[,value...]` against the grid's axes (the keys and values its cells carry).
 * Repeating a key adds values.
 */
export function parseOnly(only: readonly string[], cells: readonly Cell[]): OnlyFilter {
  const axes = new Map<string, Set<string>>();
  for (const cell of cells) {
    for (const [k, v] of Object.entries(cell.axes)) {
      if (!axes.has(k)) axes.set(k, new Set());
      axes.get(k)!.add(v);
    }
  }
  const filter: OnlyFilter = new Map();
  for (const item of only) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ExperimentError(`--only '${item}' is not key=value`, { value: item });
    const key = item.slice(0, eq).trim();
    const values = item.slice(eq + 1).split(',').map((v) => v.trim()).filter((v) => v !== '');
    const domain = axes.get(key);
    if (!domain) {
      const choices = [...axes.keys()];
      const guess = nearest(key, choices);
      throw new ExperimentError(`unknown --only key '${key}' (${guess ? `did you mean '${guess}'? ` : ''}keys: ${choices.join(', ')})`, {
        value: key, choices,
      });
    }
    if (values.length === 0) throw new ExperimentError(`--only ${key}= has no value (values: ${[...domain].join(', ')})`, { value: item });
    for (const value of values) {
      if (!domain.has(value)) {
        throw new ExperimentError(`--only ${key}='${value}' is not in this grid (values: ${[...domain].join(', ')})`, {
          value, choices: [...domain],
        });
      }
    }
    if (!filter.has(key)) filter.set(key, new Set());
    for (const value of values) filter.get(key)!.add(value);
  }
  return filter;
}

/**
 * The cells a filter selects: those whose axes match every filter key they carry (a cell without that axis,
 * like the float model for `bits`, is kept), plus every cell they depend on. Order is kept.
 */
export function selectCells(cells: readonly Cell[], filter: OnlyFilter): Cell[] {
  if (filter.size === 0) return [...cells];
  const byKey = new Map(cells.map((c) => [c.key, c]));
  const chosen = new Set<string>();
  const add = (cell: Cell) => {
    if (chosen.has(cell.key)) return;
    chosen.add(cell.key);
    for (const dep of cell.deps) add(byKey.get(dep)!);
  };
  // A cell others depend on (calibrate) is pulled in by its dependents, not selected on its own.
  const needed = new Set(cells.flatMap((c) => c.deps));
  for (const cell of cells) {
    const matches = [...filter].every(([k, values]) => !(k in cell.axes) || values.has(cell.axes[k]));
    if (matches && !needed.has(cell.key)) add(cell);
  }
  return cells.filter((c) => chosen.has(c.key));
}
