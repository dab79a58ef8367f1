/**
 * `harmoq tables`: every table and figure, rebuilt from stored results only (see source.ts), into
 * `results/<exp>/tables/` and `results/<exp>/figures/`. Those two folders belong to this command: files it
 * did not write this time are removed, so a dropped scale or dataset leaves no stale file behind.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '@harmoq/atomic-fs';
import { ExperimentError } from '../errors';
import { comparisonCrops, type CropOptions } from '../figures/crops';
import { lineChartSpec, tikzDocument, tikzLineChart } from '../figures/charts';
import { psnrBitsCharts } from '../figures/curves';
import { renderSvgs, svgToPng } from '../figures/vega';
import { plainCsv, plainLatex, plainMarkdown, type PlainTable } from './plain';
import { latexDocument, tableCsv, tableLatex, tableMarkdown } from './render';
import { loadBaselines, type BaselinesSource } from './source';
import {
  asymmetryFigures, asymmetryTables, loadAsymmetry, loadSensitivity, sensitivityFigures, sensitivityTables,
  type AsymmetrySource, type SensitivitySource,
} from './studies';
import { baselineTables } from './table';
import { componentFigures, componentTables, loadComponents, type ComponentsSource } from './components';
import { headlineTables, loadHeadline, type HeadlineSource } from './headline';
import type { NamedChart } from '../figures/curves';
import type { LineChart } from '../figures/charts';

export interface TablesOptions {
  resultsDir: string;
  /** One experiment (default: every experiment with stored results). */
  only?: string;
  /** Comparison crops (they run the model on one image, once); null: none. */
  crops?: CropOptions | null;
  log?: (line: string) => void;
}

export interface ExperimentTables {
  experiment: string;
  /** Where the rows came from, relative to the results folder; null when there were no results. */
  origin: string | null;
  files: string[];
  /** Why the comparison crops were not made, when they were asked for and not made. */
  cropsSkipped?: string;
}

type Writer = (file: string, content: string | Buffer) => void;

/** Tables (LaTeX, Markdown, CSV) and PSNR-vs-bits figures (PNG, TikZ) of the baselines grid. */
function writeBaselines(source: BaselinesSource, outDir: string, write: Writer): void {
  const tables = baselineTables(source);
  for (const t of tables) {
    write(path.join(outDir, 'tables', `${t.name}.tex`), tableLatex(t));
    write(path.join(outDir, 'tables', `${t.name}.md`), tableMarkdown(t));
    write(path.join(outDir, 'tables', `${t.name}.csv`), tableCsv(t));
  }
  write(path.join(outDir, 'tables', 'tables.tex'), latexDocument(tables.map((t) => t.name)));

  writeLineCharts(psnrBitsCharts(source), outDir, write);
}

/** Line charts as PNG and TikZ, plus a document that inputs every TikZ file. */
function writeLineCharts(all: readonly NamedChart<LineChart>[], outDir: string, write: Writer): void {
  const charts = all.filter((c) => c.chart.reference || c.chart.series.some((s) => s.points.length > 0));
  const svgs = renderSvgs(charts.map((c) => lineChartSpec(c.chart)));
  charts.forEach((c, i) => {
    write(path.join(outDir, 'figures', `${c.name}.png`), svgToPng(svgs[i]));
    write(path.join(outDir, 'figures', `${c.name}.tex`), tikzLineChart(c.chart));
  });
  if (charts.length > 0) write(path.join(outDir, 'figures', 'figures.tex'), tikzDocument(charts.map((c) => c.name)));
}

function writePlainTables(tables: readonly PlainTable[], outDir: string, write: Writer): void {
  for (const t of tables) {
    write(path.join(outDir, 'tables', `${t.name}.tex`), plainLatex(t));
    write(path.join(outDir, 'tables', `${t.name}.md`), plainMarkdown(t));
    write(path.join(outDir, 'tables', `${t.name}.csv`), plainCsv(t));
  }
  if (tables.length > 0) write(path.join(outDir, 'tables', 'tables.tex'), latexDocument(tables.map((t) => t.name)));
}

/** How each experiment's tables are built: its source (null: no results yet) and its writer. */
interface TableBuilder<S extends { origin: string }> {
  load(resultsDir: string): S | null;
  write(source: S, outDir: string, write: Writer): void;
  /** The comparison crops, for the experiments that have them. */
  crops?: boolean;
}

/** A study's builder: plain tables and line charts from its source. */
function study<S extends { origin: string }>(
  load: (resultsDir: string) => S | null, tables: (source: S) => PlainTable[], charts: (source: S) => NamedChart<LineChart>[],
): TableBuilder<S> {
  return {
    load,
    write: (source, outDir, write) => {
      writePlainTables(tables(source), outDir, write);
      writeLineCharts(charts(source), outDir, write);
    },
  };
}

const BUILDERS = {
  baselines: { load: loadBaselines, write: writeBaselines, crops: true } satisfies TableBuilder<BaselinesSource>,
  asymmetry: study<AsymmetrySource>(loadAsymmetry, asymmetryTables, asymmetryFigures),
  sensitivity: study<SensitivitySource>(loadSensitivity, sensitivityTables, sensitivityFigures),
  components: study<ComponentsSource>(loadComponents, componentTables, componentFigures),
  harmoq: study<HeadlineSource>(loadHeadline, headlineTables, () => []),
};

/** Experiments that have tables. */
export const TABLE_EXPERIMENTS = ['baselines', 'asymmetry', 'sensitivity', 'components', 'harmoq'] as const satisfies readonly (keyof typeof BUILDERS)[];

/** Removes the files in `dir` that this run did not write. */
function pruneStale(dir: string, written: ReadonlySet<string>): void {
  if (!fs.existsSync(dir)) return;
  for (const name of fs.readdirSync(dir)) {
    const file = path.join(dir, name);
    if (fs.statSync(file).isFile() && !written.has(file)) fs.rmSync(file);
  }
}

export async function buildTables(options: TablesOptions): Promise<ExperimentTables[]> {
  const resultsDir = path.resolve(options.resultsDir);
  if (options.only !== undefined && !(TABLE_EXPERIMENTS as readonly string[]).includes(options.only)) {
    throw new ExperimentError(`no tables for experiment '${options.only}' (choices: ${TABLE_EXPERIMENTS.join(', ')})`, { value: options.only, choices: TABLE_EXPERIMENTS });
  }
  const out: ExperimentTables[] = [];
  for (const experiment of TABLE_EXPERIMENTS) {
    if (options.only !== undefined && options.only !== experiment) continue;
    const builder = BUILDERS[experiment] as TableBuilder<{ origin: string }>;
    const source = builder.load(resultsDir);
    if (!source) {
      out.push({ experiment, origin: null, files: [] });
      continue;
    }
    const outDir = path.join(resultsDir, experiment);
    const written = new Set<string>();
    builder.write(source, outDir, (file, content) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      writeFileAtomic(file, content);
      written.add(file);
    });
    for (const sub of ['tables', 'figures']) pruneStale(path.join(outDir, sub), written);
    const report: ExperimentTables = { experiment, origin: source.origin, files: [...written] };
    if (options.crops && builder.crops) {
      try {
        const crops = await comparisonCrops(source as BaselinesSource, resultsDir, outDir, { log: options.log, ...options.crops });
        if (crops.length === 0) report.cropsSkipped = 'no calibration has finished';
        report.files.push(...crops);
      } catch (err) {
        // The tables stand on their own; crops need the data folder and a loadable model.
        report.cropsSkipped = err instanceof Error ? err.message : String(err);
      }
    }
    out.push(report);
  }
  return out;
}
