/**
 * DOBI (distribution-oriented bound initialization), stage 1 of 2DQuant, as its released code runs it
 * (Kai-Liu001/2DQuant basicsr/archs/quant_arch.py `DOBI()`; anchors.md section 1.3): for every quantizer,
 * 100 candidate bounds that shrink the tensor's [min, max] from both ends by equal steps of (max-min)/200,
 * keeping the one with the smallest ||x - Q(x)||_2; activations on the float model in one pass over the
 * calibration batch.
 * Paper: Liu et al., "2DQuant: Low-bit Post-Training Quantization for Image Super-Resolution", NeurIPS 2024.
 * Deviations:
 * - `search: 'one-sided'` (l = min fixed, u shrinks by (max-min)/100) is the variant the paper describes for
 *   long-tailed tensors; the code never enables it. `search: 'paper'` applies it to the post-softmax map
 *   and the post-GELU fc2 input, two-sided elsewhere. Default: 'two-sided', as the code runs.
 * - The code searches on the whole calibration tensor; here activation errors come from a streaming
 *   histogram with exact per-bin moments (exact except for bins straddling a rounding edge). Weights are
 *   searched exactly, in float32 as torch does.
 */
import { z } from 'zod';
import { ConfigError } from '../errors';
import type { PtqMethod } from '../method';
import { boundsPerSite } from '../per-site';
import { bestCandidate, dobiCandidates } from '../search';
import type { QuantSite } from '../sites';

export interface DobiOptions extends Record<string, unknown> {
  search: 'two-sided' | 'one-sided' | 'paper';
  /** Number of candidates (the code's `num`). */
  steps: number;
}

/** The tensors the paper calls long-tailed and asymmetric: the softmax map and the GELU output. */
function isLongTailed(site: QuantSite): boolean {
  return site.id.endsWith('.attn.attn_map') || site.id.endsWith('.mlp.fc2.input');
}

export const dobi: PtqMethod<DobiOptions> = {
  name: 'dobi',
  paper: 'Liu et al., "2DQuant: Low-bit Post-Training Quantization for Image Super-Resolution", NeurIPS 2024 (stage 1, DOBI)',
  summary: "2DQuant's bound search: 100 two-sided shrinks of [min, max], smallest L2 error",
  defaults: { search: 'two-sided', steps: 100 },
  options: z.strictObject({ search: z.enum(['two-sided', 'one-sided', 'paper']), steps: z.number().int().min(1).max(10000) }),
  calibrate: (ctx, opts) => boundsPerSite(ctx, 'dobi', (d, site, spec) => {
    const oneSided = opts.search === 'one-sided' || (opts.search === 'paper' && isLongTailed(site));
    if (oneSided && spec.symmetric) {
      throw new ConfigError(`dobi search '${opts.search}' is one-sided at '${site.id}', which a symmetric quantizer cannot be`, { value: opts.search });
    }
    return bestCandidate(d, { bits: spec.bits, form: spec.form, candidates: dobiCandidates(d, opts.steps, oneSided, spec.symmetric) }).bounds;
  }),
};
