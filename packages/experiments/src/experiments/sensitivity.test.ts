/** The sensitivity grid: its units, its cells, the ranking, and one real probe cell on center crops. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadPair, listBenchmark } from '@harmoq/data';
import { checkArchitecture, expectedFor } from '@harmoq/swinir';
import { loadStateDict } from '@harmoq/torch-io';
import { centerCrop, type ProbeResult } from '../probe';
import { resolveGrid, runExperiment } from '../run';
import { CellStore } from '../store';
import { tinyGrid } from '../testing/tiny-grid';
import { probeUnits, rankEntries, type SensitivityEntry } from './sensitivity';

const tiny = tinyGrid('harmoq-sens-');
afterAll(() => tiny.cleanup());
const quiet = { log: () => {}, progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream, tracker: null };
const SMALL = ['scales=2', 'bits=4', 'crop=16', 'quant.calibration.count=4', 'quant.calibration.heldOutCount=0'];
const ONLY = ['role=activation', 'block=5'];

describe('sensitivity units and ranks', () => {
  test('SwinIR-light: 24 blocks x 14 units; the split qkv inputs are one unit of three quantizers', () => {
    const file = path.join(tiny.dataDir, 'weights/house/swinir_light_x2_house.pth');
    const config = checkArchitecture(loadStateDict(file).stateDict, expectedFor({ arch: 'swinir-light', scale: 2 }), 'x2', file);
    const units = probeUnits(config, '2dquant');
    expect(units).toHaveLength(24 * 14);
    expect(units.reduce((n, u) => n + u.sites.length, 0)).toBe(384);
    const qkv = units.find((u) => u.name === 'layers.1.residual_group.blocks.2.attn.qkv.input')!;
    expect(qkv).toMatchObject({ role: 'activation', block: 8, kind: 'attn.qkv.input' });
    expect(qkv.sites).toEqual(['q', 'k', 'v'].map((p) => `layers.1.residual_group.blocks.2.attn.qkv.${p}.input`));
    expect(units.filter((u) => u.block === 8).map((u) => u.kind).sort()).toEqual([
      'attn.attn_map', 'attn.k', 'attn.proj.input', 'attn.proj.weight', 'attn.q', 'attn.qkv.input', 'attn.qkv.k.weight', 'attn.qkv.q.weight',
      'attn.qkv.v.weight', 'attn.v', 'mlp.fc1.input', 'mlp.fc1.weight', 'mlp.fc2.input', 'mlp.fc2.weight',
    ]);
  });

  test('ranks per (scale, bits), largest drop first, ties share, missing unranked', () => {
    const e = (bits: number, psnr: number | null): SensitivityEntry => ({
      scale: 4, bits, role: 'weight', block: 0, kind: 'k', unit: `u${psnr}`, sites: [], cell: 'c', psnr_drop: psnr, ssim_drop: psnr, psnr_rank: null, ssim_rank: null,
    });
    const ranked = rankEntries([e(2, 0.1), e(2, 0.5), e(2, null), e(2, 0.5), e(4, 0.01)]);
    expect(ranked.map((x) => x.psnr_rank)).toEqual([3, 1, null, 1, 1]);
  });

  test('center crops: the HR crop is the LR crop times the scale, at the same place', async () => {
    const [entry] = listBenchmark('Set5', 2, tiny.dataDir);
    const pair = await loadPair(entry, 2);
    const crop = centerCrop(pair, 2, 16);
    expect([crop.lr.width, crop.lr.height, crop.hr.width, crop.hr.height]).toEqual([16, 16, 32, 32]);
    const x = Math.floor((pair.lr.width - 16) / 2), y = Math.floor((pair.lr.height - 16) / 2);
    expect(crop.lr.data.subarray(0, 3)).toEqual(pair.lr.data.subarray((y * pair.lr.width + x) * 3, (y * pair.lr.width + x) * 3 + 3));
    const hr = ((2 * y + 31) * pair.hr.width + 2 * x + 31) * 3;
    expect(crop.hr.data.subarray(crop.hr.data.length - 3)).toEqual(pair.hr.data.subarray(hr, hr + 3));
    expect(centerCrop(pair, 2, null)).toBe(pair);
  });
});

describe('sensitivity grid', () => {
  test('one calibration per bit width and one probe cell per (bits, role, block); --set checked', () => {
    const g = resolveGrid({ name: 'sensitivity', set: ['scales=2', 'bits=2,4'], dataDir: tiny.dataDir });
    expect(g.cells.filter((c) => c.kind === 'calibrate').map((c) => c.label)).toEqual(['calibrate x2 minmax W4A4', 'calibrate x2 minmax W2A2']);
    const probes = g.cells.filter((c) => c.config.kind === 'eval' && c.config.probe);
    expect(probes).toHaveLength(2 * 2 * 24);
    const first = probes[0].config.kind === 'eval' ? probes[0].config.probe! : null;
    expect(first?.crop).toBe(48);
    expect(first?.units.map((u) => u.name.replace(/^layers\.0\.residual_group\.blocks\.0\./, ''))).toEqual([
      'attn.qkv.q.weight', 'attn.qkv.k.weight', 'attn.qkv.v.weight', 'attn.proj.weight', 'mlp.fc1.weight', 'mlp.fc2.weight',
    ]);
    expect(() => resolveGrid({ name: 'sensitivity', set: ['roles=weights'], dataDir: tiny.dataDir })).toThrow(/roles/);
    expect(() => resolveGrid({ name: 'sensitivity', set: ['crops=8'], dataDir: tiny.dataDir })).toThrow(/did you mean 'crop'/);
  });

  test('a real probe cell: float reference and each unit alone on the crop; ranked rows and tables', async () => {
    const report = await runExperiment({ name: 'sensitivity', set: SMALL, only: ONLY, dataDir: tiny.dataDir, resultsDir: tiny.resultsDir, ...quiet });
    expect(report.failed).toEqual([]);
    expect(report.ran).toHaveLength(2);
    const g = resolveGrid({ name: 'sensitivity', set: SMALL, only: ONLY, dataDir: tiny.dataDir });
    const probe = new CellStore(tiny.resultsDir).readEval(g.selected[1]) as ProbeResult;
    expect(probe.crop).toBe(16);
    expect(probe.units.map((u) => u.name.replace(/^layers\.0\.residual_group\.blocks\.5\./, ''))).toEqual([
      'attn.qkv.input', 'attn.q', 'attn.k', 'attn.v', 'attn.attn_map', 'attn.proj.input', 'mlp.fc1.input', 'mlp.fc2.input',
    ]);
    // Each unit changes the output by itself, and not all by the same amount.
    expect(new Set(probe.units.map((u) => u.psnr_y)).size).toBeGreaterThan(4);
    const file = JSON.parse(fs.readFileSync(path.join(tiny.resultsDir, 'sensitivity/sensitivity.json'), 'utf8'));
    const measured = (file.entries as SensitivityEntry[]).filter((e) => e.psnr_drop !== null);
    expect(measured).toHaveLength(8);
    const top = measured.find((e) => e.psnr_rank === 1)!;
    expect(top.psnr_drop).toBeCloseTo(probe.psnr_y - Math.min(...probe.units.map((u) => u.psnr_y)), 10);
    const md = fs.readFileSync(path.join(tiny.resultsDir, 'sensitivity/tables/sensitivity-x2-4bit.md'), 'utf8');
    expect(md.split('\n')[4]).toContain(`| 1 | ${top.unit} | activation | 5 | ${top.psnr_drop!.toFixed(3)} |`);
    expect(fs.readdirSync(path.join(tiny.resultsDir, 'sensitivity/figures'))).toEqual(expect.arrayContaining(['sensitivity-x2-4bit-activations-psnr.png', 'sensitivity-x2-4bit-activations-ssim.tex']));
  }, 120_000);
});
