import { NUM_FEAT, blockGeometry, classicalUpsampleConvs, paddedSize, type SwinIRConfig } from '@harmoq/swinir';

/**
 * Analytic FLOPs of one SwinIR forward on an h x w input (batch 1), counting a multiply-add as 2 FLOPs and
 * only the matrix work: convolutions, the four Linears per block, q k^T and attn v. LayerNorm, softmax, GELU,
 * bias/residual adds and data movement are not counted (they are memory-bound, about 1% of the multiply-adds).
 * Everything runs at the padded size (window multiple), as the model does.
 */
export function swinirFlops(config: SwinIRConfig, height: number, width: number): number {
  const L = paddedSize(height, config.windowSize) * paddedSize(width, config.windowSize);
  const e = config.embedDim, c = config.inChans;
  const conv = (inCh: number, outCh: number, k: number, pixels: number) => 2 * k * k * inCh * outCh * pixels;
  const residualConv = () => {
    if (config.resiConnection === '1conv') return conv(e, e, 3, L);
    const q = Math.floor(e / 4);
    return conv(e, q, 3, L) + conv(q, q, 1, L) + conv(q, e, 3, L);
  };
  const hidden = Math.floor(e * config.mlpRatio);
  let flops = conv(c, e, 3, L);
  config.depths.forEach((depth) => {
    for (let j = 0; j < depth; j++) {
      const n = blockGeometry(config, j).windowSize ** 2;
      // qkv + proj + fc1 + fc2, then q k^T and attn v (each 2 * N * E per token).
      flops += L * (2 * e * 3 * e + 2 * e * e + 2 * e * hidden + 2 * hidden * e) + L * 4 * n * e;
    }
    flops += residualConv();
  });
  flops += residualConv(); // conv_after_body
  const s = config.upscale;
  switch (config.upsampler) {
    case 'pixelshuffledirect':
      flops += conv(e, c * s * s, 3, L);
      break;
    case 'pixelshuffle': {
      flops += conv(e, NUM_FEAT, 3, L);
      let pixels = L;
      for (const u of classicalUpsampleConvs(s)) {
        flops += conv(NUM_FEAT, u.outChannels, 3, pixels);
        pixels *= u.factor * u.factor;
      }
      flops += conv(NUM_FEAT, c, 3, pixels);
      break;
    }
    case 'nearest+conv':
      flops += conv(e, NUM_FEAT, 3, L) + conv(NUM_FEAT, NUM_FEAT, 3, 4 * L) + 2 * conv(NUM_FEAT, NUM_FEAT, 3, 16 * L) + conv(NUM_FEAT, c, 3, 16 * L);
      break;
    case '':
      flops += conv(e, c, 3, L);
      break;
  }
  return flops;
}
