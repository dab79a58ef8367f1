/**
 * @harmoq/experiments: resumable experiment grids. A grid expands into cells keyed by their resolved config,
 * input checksums and code version; finished cells are stored once under results/cells/ and logged to MLflow;
 * each experiment module writes its tables from the stored cells. See docs/experiments.md.
 */
export { ExperimentError } from './errors';
export { canonicalJson, sha256Hex, fileSha256, filesDigest } from './hash';
export { codeVersion, runtimeVersions, type CodeVersion } from './code-version';
export {
  CELL_KINDS, CELL_FORMAT, cellKey, kindOfKey, calibrateCell, evalCell, datasetDigest, bitsLabel,
  type Cell, type CellKind, type CellConfig, type CalibrateConfig, type EvalConfig, type ModelSpec,
  type CalibrateCellInput, type EvalCellInput,
} from './cells';
export { CellStore, RESULT_FILES, type EvalResult } from './store';
export { executeCell, type ExecuteOptions } from './execute';
export {
  GRID_PRESETS, applySet, parseOnly, selectCells, defineExperiment,
  type GridPreset, type GridContext, type AggregateContext, type ExperimentModule, type AnyExperiment, type OnlyFilter,
} from './grid';
export { runPool, type CellEvent, type PoolOptions, type PoolReport } from './pool';
export { gridProgress, estimateSeconds, formatDuration, costClass, type GridProgress } from './progress';
export { trackedCellKeys, logCellRun, type CellRunContext } from './tracking';
export { EXPERIMENTS, experimentByName, experimentNames } from './registry';
export {
  baselines, baselinesSchema, baselineRows, baselinesCsv, checkpointFor,
  type BaselinesConfig, type BaselineRow, type BaselineDatasetEntry,
} from './experiments/baselines';
export {
  resolveGrid, runExperiment, runOneCell, describeGrid, writeTables, environment, defaultResultsDir,
  type GridOptions, type ResolvedGrid, type RunOptions, type ExperimentReport, type CellOptions,
} from './run';
export { buildTables, TABLE_EXPERIMENTS, type TablesOptions, type ExperimentTables } from './tables/build';
export { loadBaselines, orderBits, parseBitsLabel, type BaselinesSource } from './tables/source';
export {
  baselineTables, rankColumn, methodLabel, FP_BITS,
  type ResultTable, type TableGroup, type TableRow, type TableCell, type MetricColumn, type Rank,
} from './tables/table';
export { fillTableBlocks, updateTableBlocks } from './tables/readme';
export { tableLatex, tableMarkdown, tableCsv, latexDocument, latexEscape } from './tables/render';
export {
  PALETTE, lineChartSpec, barChartSpec, tikzLineChart, tikzBarChart, tikzDocument, niceTicks,
  type LineChart, type LineSeries, type BarChart,
} from './figures/charts';
export { psnrBitsCharts, type NamedChart } from './figures/curves';
export { asymmetryCharts, sensitivityChart, type AsymmetryRow, type SensitivityRow } from './figures/hooks';
export { renderSvgs, svgToPng, type VegaLiteSpec } from './figures/vega';
export { comparisonCrops, detailBox, cropZoom, type CropOptions } from './figures/crops';
export { CLAIM_FILE, type ClaimHolder, type ClaimOptions } from './store';
export {
  SCHEDULERS, planSlurm, arraySpec, shellQuote, sbatchDirectives, slurmScripts, emitSlurm, jobTrackingUri,
  type Scheduler, type SlurmOptions, type SlurmGridFlags, type SlurmGroup, type SlurmPlan, type SlurmScriptsInput,
  type EmitSlurmOptions, type SlurmSetup,
} from './slurm';
