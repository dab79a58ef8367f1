/**
 * `sensitivity`: per-layer sensitivity. One calibration per bit width (WbAb, one method), then every
 * quantizer alone, the rest of the model float, ranked by the PSNR-Y and SSIM-Y it costs. A unit is one
 * quantizer, except 2DQuant's split qkv inputs: the three quantize one tensor (the qkv Linear's input), so they
 * are one unit, `<block>.attn.qkv.input` (restrictQuantization fuses them; it needs equal part bounds).
 *
 * Each cell probes the units of one (scale, bits, role, block) in turn and reruns the float model on the
 * same images as its reference (probe.ts). The quick preset probes 48x48 LR center crops of Set5, the paper
 * preset the whole images: the cost is cells x units x images, and docs/experiments.md gives the numbers.
 */
import { stringify } from 'csv-stringify/sync';
import { z } from 'zod';
import { DEFAULT_SEED, quantSites, SUPPORTED_BITS, type QuantRole, type QuantSite } from '@harmoq/quant';
import { checkArchitecture, expectedFor, type ArchName, type SwinIRConfig } from '@harmoq/swinir';
import { loadStateDict } from '@harmoq/torch-io';
import { calibrateCell, evalCell, type Cell, type ProbeSpec } from '../cells';
import { defineExperiment, writeRowsFiles, type AggregateContext, type GridContext } from '../grid';
import type { ProbeResult } from '../probe';
import type { CellStore } from '../store';
import { calibrationRequest, checkpointFor, DATASETS_FIELD, METHOD_FIELD, MODEL_FIELDS, QUANT_FIELD, SCALES_FIELD, STAND_IN } from './baselines';

const ROLES = ['weight', 'activation'] as const;

export const sensitivitySchema = z.strictObject({
  ...MODEL_FIELDS,
  /** The bounds (one calibration per bit width); restricting the qkv input needs equal q/k/v input bounds (minmax, dobi, percentile, mse). */
  method: METHOD_FIELD,
  bits: z.array(z.number().int().refine((b) => SUPPORTED_BITS.includes(b), { message: `bits must be one of ${SUPPORTED_BITS.join(', ')}` })).min(1),
  roles: z.array(z.enum(ROLES)).min(1),
  scales: SCALES_FIELD,
  dataset: DATASETS_FIELD.element,
  /** LR center crop side in pixels; 0: whole images. */
  crop: z.number().int().min(0),
  /** Rows of the LaTeX table (the CSV and Markdown rank every unit). */
  top: z.number().int().min(1),
  quant: QUANT_FIELD,
});
export type SensitivityConfig = z.infer<typeof sensitivitySchema>;

/** A unit's place: its Swin block in forward order (0..), or -1 for quantizers outside the blocks (convs). */
export interface ProbeUnit {
  name: string;
  sites: string[];
  role: QuantRole;
  block: number;
  /** The unit's name within its block (`attn.qkv.input`, `mlp.fc1.weight`); the figure's series. */
  kind: string;
}

/** The units of a site set on a model config, in forward order. */
export function probeUnits(config: SwinIRConfig, siteSet: string): ProbeUnit[] {
  const starts = config.depths.map((_, i) => config.depths.slice(0, i).reduce((a, b) => a + b, 0));
  const units = new Map<string, ProbeUnit>();
  for (const site of quantSites(config, siteSet)) {
    const name = unitName(site);
    const block = site.layer === undefined || site.block === undefined ? -1 : starts[site.layer] + site.block;
    const kind = block < 0 ? name : name.replace(/^layers\.\d+\.residual_group\.blocks\.\d+\./, '');
    const unit = units.get(name) ?? { name, sites: [], role: site.role, block, kind };
    unit.sites.push(site.id);
    units.set(name, unit);
  }
  return [...units.values()];
}

const unitName = (site: QuantSite) => (site.part !== undefined && site.role === 'activation' ? site.id.replace(/\.[qkv]\.input$/, '.input') : site.id);

const modelConfigs = new Map<string, SwinIRConfig>();
/** The checkpoint's SwinIR config (depths, heads, ...), so the units follow whatever model the grid names. */
function modelConfig(arch: string, scale: number, file: string): SwinIRConfig {
  let config = modelConfigs.get(file);
  if (!config) {
    config = checkArchitecture(loadStateDict(file).stateDict, expectedFor({ arch: arch as ArchName, scale }), `${arch} x${scale}`, file);
    modelConfigs.set(file, config);
  }
  return config;
}

function cells(config: SensitivityConfig, ctx: GridContext): Cell[] {
  const out: Cell[] = [];
  const roles = ROLES.filter((r) => config.roles.includes(r));
  for (const scale of [...new Set(config.scales)].sort((a, b) => b - a)) {
    const checkpointPath = checkpointFor(config, scale, ctx.dataDir);
    const model = { arch: config.arch, scale, checkpointPath, dataDir: ctx.dataDir };
    for (const bits of [...new Set(config.bits)].sort((a, b) => b - a)) {
      const request = calibrationRequest(config, config.method, bits, bits);
      const cal = calibrateCell({ ...model, request });
      out.push({ ...cal, axes: { ...cal.axes, bits: String(bits) } });
      const units = probeUnits(modelConfig(config.arch, scale, checkpointPath), request.quantizer.sites);
      for (const role of roles) {
        const blocks = [...new Set(units.filter((u) => u.role === role).map((u) => u.block))];
        for (const block of blocks) {
          const probe: ProbeSpec = {
            units: units.filter((u) => u.role === role && u.block === block).map((u) => ({ name: u.name, sites: u.sites })),
            crop: config.crop === 0 ? null : config.crop,
          };
          out.push(evalCell({ ...model, dataset: config.dataset, quant: cal, probe, axes: { bits: String(bits), role, block: block < 0 ? 'outside' : String(block) } }));
        }
      }
    }
  }
  return out;
}

/** One unit's measurement (null values while its cell has not run). */
export interface SensitivityEntry {
  scale: number;
  bits: number;
  role: QuantRole;
  block: number;
  kind: string;
  unit: string;
  sites: string[];
  cell: string;
  psnr_drop: number | null;
  ssim_drop: number | null;
  /** 1 = costs the most, among the units of its (scale, bits) with a value. */
  psnr_rank: number | null;
  ssim_rank: number | null;
}

/** Entries from the probe cells' stored results, ranked per (scale, bits). */
export function sensitivityEntries(grid: readonly Cell[], store: Pick<CellStore, 'readEval'>): SensitivityEntry[] {
  const entries: SensitivityEntry[] = [];
  for (const cell of grid) {
    const probe = cell.config.kind === 'eval' ? cell.config.probe : undefined;
    if (!probe) continue;
    const result = store.readEval(cell) as ProbeResult | undefined;
    const measured = new Map(result?.units.map((u) => [u.name, u]));
    const block = cell.axes.block === 'outside' ? -1 : Number(cell.axes.block);
    for (const unit of probe.units) {
      const m = measured.get(unit.name);
      entries.push({
        scale: cell.config.scale, bits: Number(cell.axes.bits), role: cell.axes.role as QuantRole, block,
        kind: block < 0 ? unit.name : unit.name.replace(/^layers\.\d+\.residual_group\.blocks\.\d+\./, ''),
        unit: unit.name, sites: unit.sites, cell: cell.key,
        psnr_drop: m && result ? result.psnr_y - m.psnr_y : null,
        ssim_drop: m && result ? result.ssim_y - m.ssim_y : null,
        psnr_rank: null, ssim_rank: null,
      });
    }
  }
  return rankEntries(entries);
}

/** Ranks per (scale, bits) by each drop (largest first); ties share the better rank. */
export function rankEntries(entries: SensitivityEntry[]): SensitivityEntry[] {
  const groups = new Map<string, SensitivityEntry[]>();
  for (const e of entries) groups.set(`${e.scale}|${e.bits}`, [...(groups.get(`${e.scale}|${e.bits}`) ?? []), e]);
  for (const group of groups.values()) {
    for (const [field, rank] of [['psnr_drop', 'psnr_rank'], ['ssim_drop', 'ssim_rank']] as const) {
      const values = group.map((e) => e[field]).filter((v): v is number => v !== null).sort((a, b) => b - a);
      for (const e of group) e[rank] = e[field] === null ? null : values.indexOf(e[field]) + 1;
    }
  }
  return entries;
}

/** Entries in table order: scale, bits (high first), then by PSNR rank (missing last, in forward order). */
export function rankedOrder(entries: readonly SensitivityEntry[]): SensitivityEntry[] {
  const rank = (e: SensitivityEntry) => e.psnr_rank ?? Number.MAX_SAFE_INTEGER;
  return [...entries].sort((a, b) => a.scale - b.scale || b.bits - a.bits || rank(a) - rank(b) || a.block - b.block || (a.unit < b.unit ? -1 : 1));
}

const full = (v: number | null) => (v === null ? '' : String(v));

export function sensitivityCsv(entries: readonly SensitivityEntry[]): string {
  const header = ['scale', 'bits', 'psnr_rank', 'ssim_rank', 'unit', 'role', 'block', 'kind', 'psnr_drop', 'ssim_drop', 'sites', 'cell'];
  return stringify([header, ...rankedOrder(entries).map((e) => [
    e.scale, e.bits, full(e.psnr_rank), full(e.ssim_rank), e.unit, e.role, e.block, e.kind, full(e.psnr_drop), full(e.ssim_drop), e.sites.join(' '), e.cell,
  ])]);
}

export interface SensitivityRowsFile {
  experiment: 'sensitivity';
  config: SensitivityConfig;
  cells: { total: number; done: number; missing: number };
  entries: SensitivityEntry[];
}

async function aggregate(config: SensitivityConfig, grid: readonly Cell[], ctx: AggregateContext): Promise<string[]> {
  const entries = sensitivityEntries(grid, ctx.store);
  return writeRowsFiles('sensitivity', config, grid, ctx, sensitivityCsv(entries), { entries });
}

export const sensitivity = defineExperiment<SensitivityConfig>({
  name: 'sensitivity',
  aliases: [],
  description: 'every quantizer alone (weights, inputs, attention), the rest float: per-site PSNR/SSIM loss, ranked',
  schema: sensitivitySchema,
  defaults: (preset) => ({
    preset,
    seed: DEFAULT_SEED,
    ...STAND_IN,
    method: 'minmax',
    bits: [2, 4],
    roles: [...ROLES],
    scales: preset === 'quick' ? [4] : [2, 4],
    dataset: 'Set5',
    crop: preset === 'quick' ? 48 : 0,
    top: 20,
    quant: {},
  }),
  cells,
  aggregate,
});
