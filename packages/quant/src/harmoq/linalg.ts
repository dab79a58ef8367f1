/** Small dense float64 linear algebra for HarmoQ's per-layer solves (n <= a few hundred; row-major n x n). */
import { CalibrationError } from '../errors';

/** Lower Cholesky factor L of a symmetric positive definite A (A = L Lᵀ); throws naming `what` if A is not SPD. */
export function cholesky(a: Float64Array, n: number, what: string): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = a[i * n + j];
      for (let k = 0; k < j; k++) sum -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(sum > 0)) throw new CalibrationError(`${what}: matrix is not positive definite (pivot ${sum} at ${i})`);
        l[i * n + i] = Math.sqrt(sum);
      } else {
        l[i * n + j] = sum / l[j * n + j];
      }
    }
  }
  return l;
}

/** A⁻¹ of a symmetric positive definite A, through its Cholesky factor. */
export function spdInverse(a: Float64Array, n: number, what: string): Float64Array {
  const l = cholesky(a, n, what);
  // L⁻¹ by forward substitution, then A⁻¹ = L⁻ᵀ L⁻¹.
  const li = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let sum = i === c ? 1 : 0;
      for (let k = c; k < i; k++) sum -= l[i * n + k] * li[k * n + c];
      li[i * n + c] = sum / l[i * n + i];
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = 0;
      for (let k = i; k < n; k++) sum += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = sum;
      inv[j * n + i] = sum;
    }
  }
  return inv;
}

/** C = A B for A (r x k) and B (k x c), row-major. */
export function matmul(a: Float64Array, b: Float64Array, r: number, k: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) {
    for (let p = 0; p < k; p++) {
      const v = a[i * k + p];
      if (v === 0) continue;
      for (let j = 0; j < c; j++) out[i * c + j] += v * b[p * c + j];
    }
  }
  return out;
}

/** tr(A M Bᵀ) for A, B (r x n) and M (n x n): Σ_i a_i M b_iᵀ. */
export function traceAMBt(a: Float64Array, m: Float64Array, b: Float64Array, r: number, n: number): number {
  const am = matmul(a, m, r, n, n);
  let sum = 0;
  for (let i = 0; i < r * n; i++) sum += am[i] * b[i];
  return sum;
}
