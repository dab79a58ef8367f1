/**
 * Size-dependent constants of the Swin attention, computed as the official network_swinir.py does:
 * the relative position index, the bias gathered from a block's table, and the shifted-window mask.
 */

/** Official `relative_position_index` for a ws x ws window: (N x N) indices into the (2ws-1)^2 table, N = ws^2. */
export function relativePositionIndex(ws: number): Int32Array {
  const n = ws * ws;
  const index = new Int32Array(n * n);
  for (let i = 0; i < n; i++) {
    const hi = Math.floor(i / ws), wi = i % ws;
    for (let j = 0; j < n; j++) {
      const hj = Math.floor(j / ws), wj = j % ws;
      index[i * n + j] = (hi - hj + ws - 1) * (2 * ws - 1) + (wi - wj + ws - 1);
    }
  }
  return index;
}

/**
 * `table[index].view(N, N, heads).permute(2, 0, 1)`: the (heads x N x N) bias added to q k^T.
 * `table` is the block's `relative_position_bias_table`, ((2ws-1)^2 x heads), row-major.
 */
export function relativePositionBias(table: Float32Array, heads: number, ws: number): Float32Array {
  const n = ws * ws;
  const index = relativePositionIndex(ws);
  const bias = new Float32Array(heads * n * n);
  for (let h = 0; h < heads; h++) {
    for (let k = 0; k < n * n; k++) bias[h * n * n + k] = table[index[k] * heads + h];
  }
  return bias;
}

/**
 * Official `calculate_mask((H, W))` for a shifted block: (nW x N x N) with 0 where two tokens of a window
 * come from the same region of the rolled image and -100 elsewhere. Windows are in row-major window order.
 */
export function shiftedWindowMask(height: number, width: number, ws: number, shift: number): Float32Array {
  // Region labels: 3 bands per axis, [0, H-ws), [H-ws, H-shift), [H-shift, H), numbered row-major.
  const band = (i: number, size: number) => (i < size - ws ? 0 : i < size - shift ? 1 : 2);
  const nWh = height / ws, nWw = width / ws, n = ws * ws;
  const mask = new Float32Array(nWh * nWw * n * n);
  const labels = new Int32Array(n);
  for (let wh = 0; wh < nWh; wh++) {
    for (let ww = 0; ww < nWw; ww++) {
      for (let t = 0; t < n; t++) {
        const h = wh * ws + Math.floor(t / ws), w = ww * ws + (t % ws);
        labels[t] = band(h, height) * 3 + band(w, width);
      }
      const base = (wh * nWw + ww) * n * n;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) mask[base + i * n + j] = labels[i] === labels[j] ? 0 : -100;
      }
    }
  }
  return mask;
}
