/**
 * What the ablation-style grids (components, harmoq) keep per cell: a calibration's wall-clock or an eval's
 * PSNR-Y/SSIM-Y, read from the store by key. The same reader fills the rows file when a grid aggregates and
 * refreshes it when `harmoq tables` rebuilds, so both see one definition of a cell's values.
 */
import type { Cell } from './cells';
import type { CellStore } from './store';

export interface StoredValues {
  /** The eval's benchmark set; null for a calibration. */
  dataset: string | null;
  cell: string;
  status: 'done' | 'missing';
  psnr_y: number | null;
  ssim_y: number | null;
  /** Calibration wall-clock seconds (calibrations only). */
  seconds: number | null;
}

type Store = Pick<CellStore, 'readEval' | 'readQParams'>;

/** A grid cell's stored values (`missing` and nulls until it has run). */
export function storedValues(c: Pick<Cell, 'key' | 'kind' | 'axes'>, store: Store): StoredValues {
  if (c.kind === 'calibrate') {
    const q = store.readQParams(c);
    return { dataset: null, cell: c.key, status: q ? 'done' : 'missing', psnr_y: null, ssim_y: null, seconds: q?.seconds ?? null };
  }
  const r = store.readEval(c);
  return { dataset: c.axes.dataset, cell: c.key, status: r ? 'done' : 'missing', psnr_y: r?.psnr_y ?? null, ssim_y: r?.ssim_y ?? null, seconds: null };
}

/** A rows-file entry with its cell's stored values, when the store has them now. */
export function refreshEntry<E extends StoredValues>(e: E, store: Store): E {
  if (e.dataset === null) {
    const q = store.readQParams({ key: e.cell, kind: 'calibrate' });
    return q ? { ...e, status: 'done', seconds: q.seconds } : e;
  }
  const r = store.readEval({ key: e.cell, kind: 'eval' });
  return r ? { ...e, status: 'done', psnr_y: r.psnr_y, ssim_y: r.ssim_y } : e;
}
