import { METHOD_NAMES } from '@harmoq/quant';
import type { Cell } from './cells';
import { ExperimentError } from './errors';
import { baselines, baselinesSchema, type BaselinesConfig } from './experiments/baselines';
import { applySet, parseOnly, selectCells } from './grid';
import { runPool, type CellEvent } from './pool';
import { estimateSeconds } from './progress';
import { experimentByName, experimentNames } from './registry';
import { resolveGrid } from './run';

const defaults = () => baselinesSchema.parse(baselines.defaults('quick')) as BaselinesConfig;

function thrown(fn: () => unknown): ExperimentError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ExperimentError);
    return err as ExperimentError;
  }
  throw new Error('did not throw');
}

describe('experiment config: defaults and --set', () => {
  test('baselines defaults: every registered method, W4A4/W3A3/W2A2, x2 and x4, Set5/Set14/B100, seed 3407, the FP row', () => {
    const c = defaults();
    expect(c.methods).toEqual(METHOD_NAMES);
    expect(c).toMatchObject({ bits: ['W4A4', 'W3A3', 'W2A2'], scales: [2, 4], datasets: ['Set5', 'Set14', 'B100'], seed: 3407, fp: true, preset: 'quick' });
    expect(experimentByName('main')).toBe(experimentByName('baselines'));
  });

  test('--set parses lists, numbers, booleans and record entries by the schema', () => {
    let c = applySet(baselinesSchema, defaults(), 'datasets=Set5, B100');
    c = applySet(baselinesSchema, c, 'scales=4');
    c = applySet(baselinesSchema, c, 'fp=false');
    c = applySet(baselinesSchema, c, 'seed=7');
    c = applySet(baselinesSchema, c, 'quant.calibration.count=8');
    c = applySet(baselinesSchema, c, 'quant.dobi.oneSided=true');
    expect(c).toMatchObject({ datasets: ['Set5', 'B100'], scales: [4], fp: false, seed: 7, quant: { 'calibration.count': 8, 'dobi.oneSided': true } });
  });

  test('--set errors name the bad key or value and the choices', () => {
    const unknown = thrown(() => applySet(baselinesSchema, defaults(), 'dataset=Set5'));
    expect(unknown.message).toMatch(/unknown --set key 'dataset' \(did you mean 'datasets'\? keys: preset, seed, .*datasets/);
    expect(thrown(() => applySet(baselinesSchema, defaults(), 'datasets=Set5,Set99')).message).toMatch(/datasets\.1: .*"Set5"\|"Set14"\|"B100"/);
    expect(thrown(() => applySet(baselinesSchema, defaults(), 'methods=minmax,nope')).message).toMatch(/methods\.1: .*"minmax"/);
    expect(thrown(() => applySet(baselinesSchema, defaults(), 'seed=abc')).message).toMatch(/--set seed=abc: seed: .*number/);
    expect(thrown(() => applySet(baselinesSchema, defaults(), 'scales=3,5')).message).toMatch(/scale must be one of 2, 3, 4, 8/);
    expect(thrown(() => applySet(baselinesSchema, defaults(), 'quant=1')).message).toMatch(/is a group/);
    expect(thrown(() => applySet(baselinesSchema, defaults(), 'seed')).message).toMatch(/not key=value/);
    // Quant settings are checked by @harmoq/quant's resolver when the grid expands.
    expect(thrown(() => resolveGrid({ name: 'baselines', set: ['quant.calibration.cnt=4'] })).message).toMatch(/unknown --set key 'calibration.cnt'.*calibration.count/);
    expect(thrown(() => resolveGrid({ name: 'baselines', set: ['quant.bogus.x=4'] })).message).toMatch(/unknown section 'bogus'/);
    expect(thrown(() => resolveGrid({ name: 'nope' })).message).toBe(`unknown experiment 'nope' (choices: ${experimentNames().join(', ')})`);
    expect(experimentNames()).toEqual(expect.arrayContaining(['baselines', 'main', 'asymmetry', 'components', 'sensitivity']));
    expect(thrown(() => resolveGrid({ name: 'baselines', preset: 'fast' })).message).toMatch(/unknown preset 'fast' \(choices: quick, paper\)/);
  });
});

describe('the baselines grid', () => {
  const grid = resolveGrid({ name: 'baselines' });

  test('has every cell once: per scale 3 FP evals, and per method x bits one calibration and 3 evals', () => {
    const perScale = 3 + METHOD_NAMES.length * 3 * 4;
    expect(grid.cells).toHaveLength(2 * perScale);
    expect(new Set(grid.cells.map((c) => c.key)).size).toBe(grid.cells.length);
  });

  test('is ordered cheapest first (x4 before x2, Set5 before Set14 before B100), each calibration before its evals', () => {
    const order = (c: Cell) => [c.axes.scale === '4' ? 0 : 1, ['Set5', 'Set14', 'B100'].indexOf(c.axes.dataset ?? 'Set5')];
    const evals = grid.cells.filter((c) => c.kind === 'eval').map(order);
    const sorted = [...evals].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    expect(evals).toEqual(sorted);
    const position = new Map(grid.cells.map((c, i) => [c.key, i]));
    for (const cell of grid.cells) for (const dep of cell.deps) expect(position.get(dep)!).toBeLessThan(position.get(cell.key)!);
    expect(grid.cells[0].label).toBe('eval Set5 x4 fp');
  });

  test('--only selects by axis and pulls in dependencies; a cell without the axis (FP for bits) stays', () => {
    const only = selectCells(grid.cells, parseOnly(['method=minmax,fp', 'bits=W2A2', 'dataset=Set5', 'scale=2'], grid.cells));
    expect(only.map((c) => c.label)).toEqual(['eval Set5 x2 fp', 'calibrate x2 minmax W2A2', 'eval Set5 x2 minmax W2A2']);
    expect(thrown(() => parseOnly(['methd=minmax'], grid.cells)).message).toBe(
      "unknown --only key 'methd' (did you mean 'method'? keys: scale, method, dataset, bits)");
    expect(thrown(() => parseOnly(['dataset=Urban100'], grid.cells)).message).toBe(
      "--only dataset='Urban100' is not in this grid (values: Set5, Set14, B100)");
  });
});

describe('the worker pool', () => {
  const fake = (key: string, deps: string[] = []): Cell => ({ key, kind: 'eval', label: key, axes: {}, deps } as unknown as Cell);

  test('runs dependencies first, at most `jobs` at a time, and fails the dependents of a failed cell', async () => {
    const cells = [fake('a'), fake('b', ['a']), fake('c'), fake('d', ['c']), fake('e')];
    let running = 0;
    let peak = 0;
    const order: string[] = [];
    const events: CellEvent['type'][] = [];
    const report = await runPool(cells, {
      jobs: 2,
      isDone: (c) => c.key === 'e',
      run: async (cell) => {
        running++;
        peak = Math.max(peak, running);
        order.push(cell.key);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        if (cell.key === 'c') throw new Error('boom');
      },
      onEvent: (e) => events.push(e.type),
    });
    expect(peak).toBe(2);
    expect(order.indexOf('a')).toBeLessThan(order.indexOf('b'));
    expect(order).not.toContain('d');
    expect(report.ran.sort()).toEqual(['a', 'b']);
    expect(report.skipped).toEqual(['e']);
    expect(report.failed).toEqual([{ key: 'c', error: 'boom' }, { key: 'd', error: 'dependency c failed' }]);
    expect(events.filter((t) => t === 'failed')).toHaveLength(2);
  });

  test('ETA: work x the mean rate of the same cost class (else kind), over the jobs; unknown before a cell of the kind finished', () => {
    const cell = (kind: string, method: string, work: number) => ({ kind, axes: { method }, work } as unknown as Cell);
    const rates = new Map([['eval|fp', [10, 20]], ['eval|quant', [40]], ['calibrate|minmax', [30]]]);
    expect(estimateSeconds([cell('eval', 'fp', 2), cell('eval', 'dobi', 0.5)], rates, 1)).toBe(50);
    expect(estimateSeconds([cell('eval', 'fp', 2), cell('eval', 'dobi', 0.5)], rates, 2)).toBe(25);
    expect(estimateSeconds([cell('calibrate', '2dquant', 1)], rates, 1)).toBe(30);
    expect(estimateSeconds([cell('calibrate', 'minmax', 1)], new Map([['eval|fp', [1]]]), 1)).toBeUndefined();
  });

  test('eval work is the set\'s HR megapixels: B100 > Set14 > Set5', () => {
    const grid = resolveGrid({ name: 'baselines', only: ['method=fp', 'scale=2'] });
    expect(grid.selected.map((c) => c.axes.dataset)).toEqual(['Set5', 'Set14', 'B100']);
    const [set5, set14, b100] = grid.selected.map((c) => c.work);
    expect(set5).toBeCloseTo((512 * 512 + 288 * 288 + 256 * 256 + 280 * 280 + 228 * 344) / 1e6, 6);
    expect(b100).toBeCloseTo((100 * 481 * 321) / 1e6, 6);
    expect(set14).toBeGreaterThan(set5);
});
});
