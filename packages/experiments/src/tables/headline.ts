/**
 * Tables of the headline comparison. Source: `results/harmoq/harmoq.json` (written by `harmoq exp harmoq`), whose
 * entries name their cells; each named cell's stored result refreshes its values, then the rows are derived again
 * with the experiment's own `headlineRows`.
 * Per scale, the paper layout: per bit width the baseline and the challenger (mean +- sample std over the seeds)
 * and their paired gain, datasets x (PSNR, SSIM) on the Y channel, the better mean bold. Then one claims table:
 * every row held to a claim, the gain it needs, the gain measured, and whether it is met.
 */
import * as path from 'node:path';
import { headlineRows, type HeadlineEntry, type HeadlineRow, type HeadlineRowsFile, type Spread } from '../experiments/harmoq';
import { cell, decimalsFor, type PlainCell, type PlainColumn, type PlainTable } from './plain';
import { orderBits } from './source';
import { readRefreshedRows } from './studies';
import { ARCH_LABELS } from './table';

export interface HeadlineSource {
  origin: string;
  config: HeadlineRowsFile['config'];
  rows: HeadlineRow[];
  budgets: HeadlineRowsFile['budgets'];
}

export function loadHeadline(resultsDir: string): HeadlineSource | null {
  const read = readRefreshedRows<HeadlineEntry, HeadlineRowsFile>(resultsDir, 'harmoq');
  return read && { origin: read.origin, config: read.file.config, rows: headlineRows(read.entries, read.file.config), budgets: read.file.budgets };
}

const METHOD_LABELS: Record<string, string> = { '2dquant': '2DQuant', harmoq: 'HarmoQ' };
const label = (m: string) => METHOD_LABELS[m] ?? m;

/** `mean ± std` (the std only with more than one seed). */
function meanStd(s: Spread | null, digits: number, signed = false): PlainCell {
  if (!s) return cell(null);
  const f = (v: number) => `${signed && v >= 0 ? '+' : ''}${v.toFixed(digits)}`;
  return cell(s.mean, s.values.length > 1 ? `${f(s.mean)} ± ${s.std.toFixed(digits)}` : f(s.mean));
}

/** Decimals per metric, from the per-seed gains of the rows: enough that the gains show (see decimalsFor). */
function gainDigits(rows: readonly HeadlineRow[]): Record<'psnr_y' | 'ssim_y', number> {
  const gains = (m: 'psnr_y' | 'ssim_y') => rows.flatMap((r) => r.gain[m]?.values ?? []);
  return { psnr_y: decimalsFor(gains('psnr_y'), 2, 4), ssim_y: decimalsFor(gains('ssim_y'), 4, 5) };
}

function scaleTable(source: HeadlineSource, scale: number): PlainTable {
  const { config } = source;
  const mine = source.rows.filter((r) => r.scale === scale);
  const datasets = [...new Set(mine.map((r) => r.dataset))];
  const body: PlainCell[][] = [];
  const rules: number[] = [];
  const digits = gainDigits(mine);
  for (const bits of orderBits(mine.map((r) => r.bits))) {
    if (body.length > 0) rules.push(body.length);
    const at = (d: string) => mine.find((r) => r.bits === bits && r.dataset === d);
    const methodRow = (which: 'baseline' | 'challenger'): PlainCell[] => [
      cell(config[which], label(config[which])), cell(bits),
      ...datasets.flatMap((d) => {
        const row = at(d);
        const other = row?.[which === 'baseline' ? 'challenger' : 'baseline'];
        return (['psnr_y', 'ssim_y'] as const).map((m) => {
          const c = meanStd(row?.[which][m] ?? null, digits[m]);
          const mineMean = row?.[which][m]?.mean;
          const otherMean = other?.[m]?.mean;
          return mineMean !== undefined && otherMean !== undefined && mineMean > otherMean ? { ...c, rank: 1 as const } : c;
        });
      }),
    ];
    body.push(methodRow('baseline'), methodRow('challenger'), [
      cell('gain', 'gain'), cell(bits),
      ...datasets.flatMap((d) => [meanStd(at(d)?.gain.psnr_y ?? null, digits.psnr_y, true), meanStd(at(d)?.gain.ssim_y ?? null, digits.ssim_y, true)]),
    ]);
  }
  const columns: PlainColumn[] = [
    { header: 'Method', csv: 'method', align: 'l' }, { header: 'Bits', csv: 'bits', align: 'l' },
    ...datasets.flatMap((d): PlainColumn[] => [
      { header: 'PSNR', csv: `${d}_psnr_y`, align: 'r' }, { header: 'SSIM', csv: `${d}_ssim_y`, align: 'r' },
    ]),
  ];
  const budgets = source.budgets.filter((b) => b.scale === scale)[0]?.methods ?? [];
  const budgetText = budgets.map((b) => `${label(b.method)} ${b.gradientSteps ? `${b.gradientSteps} steps x batch ${b.batch} x ${b.crop}px crops` : 'no gradient steps'}`).join(', ');
  const seconds = [config.baseline, config.challenger].map((m) => {
    const secs = mine.map((r) => r[m === config.baseline ? 'baseline' : 'challenger'].calibration_seconds).filter((v): v is number => v !== null);
    return secs.length ? `${label(m)} ${(secs.reduce((a, v) => a + v, 0) / secs.length).toFixed(0)} s` : null;
  }).filter(Boolean);
  return {
    name: `harmoq-x${scale}`,
    title: `${ARCH_LABELS[config.arch] ?? config.arch} x${scale}, ${label(config.challenger)} against ${label(config.baseline)}`,
    caption: `checkpoint ${path.basename(config.checkpoint.replaceAll('{scale}', String(scale)))}, preset ${config.preset}, ` +
      `seeds ${config.seeds.join(', ')} (each seed draws the calibration patches both methods use). PSNR (dB) / SSIM on the Y channel, ` +
      `mean ± sample std over the seeds; gain: ${label(config.challenger)} minus ${label(config.baseline)} on the same seed. ` +
      `Budget: ${budgetText || 'n/a'}; mean calibration wall-clock ${seconds.join(', ') || 'n/a'}. The better mean in bold; -- not run yet.`,
    groups: [{ label: '', span: 2 }, ...datasets.map((d) => ({ label: d, span: 2 }))],
    columns, rows: body, rules,
  };
}

function claimsTable(source: HeadlineSource): PlainTable {
  const { config } = source;
  const rows = source.rows.filter((r) => r.claim !== null);
  const digits = gainDigits(rows);
  return {
    name: 'harmoq-claims',
    title: `${label(config.challenger)} against ${label(config.baseline)}: the claims`,
    caption: `target: a mean PSNR-Y gain of at least +${config.target.psnr_y} dB at ${config.target.bits} on ${config.target.dataset}; ` +
      'no-loss: a mean gain of at least 0 at the other bit widths. Met is decided once every seed is stored.',
    columns: [
      { header: 'Scale', csv: 'scale', align: 'l' }, { header: 'Bits', csv: 'bits', align: 'l' }, { header: 'Set', csv: 'dataset', align: 'l' },
      { header: 'Claim', csv: 'claim', align: 'l' }, { header: 'Needs (dB)', csv: 'required_psnr_y', align: 'r' },
      { header: 'PSNR gain (dB)', csv: 'gain_psnr_y', align: 'r' }, { header: 'SSIM gain', csv: 'gain_ssim_y', align: 'r' },
      { header: 'Seeds', csv: 'seeds', align: 'r' }, { header: 'Met', csv: 'met', align: 'l' },
    ],
    rows: rows.map((r) => [
      cell(r.scale, `x${r.scale}`), cell(r.bits), cell(r.dataset), cell(r.claim), cell(r.required, r.required === null ? null : `+${r.required.toFixed(2)}`),
      meanStd(r.gain.psnr_y, digits.psnr_y, true), meanStd(r.gain.ssim_y, digits.ssim_y, true), cell(r.gain.seeds.length, `${r.gain.seeds.length}/${config.seeds.length}`),
      cell(r.met === null ? null : r.met ? 'yes' : 'no'),
    ]),
  };
}

export function headlineTables(source: HeadlineSource): PlainTable[] {
  const scales = [...new Set(source.rows.map((r) => r.scale))].sort((a, b) => a - b);
  return [...scales.map((s) => scaleTable(source, s)), claimsTable(source)].filter((t) => t.rows.length > 0);
}
