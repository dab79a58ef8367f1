/**
 * SwinIR constructor configuration, mirroring the official `SwinIR.__init__` arguments
 * (JingyunLiang/SwinIR models/network_swinir.py). Field names are camelCase versions of
 * the Python names; `fromPythonConfig` maps a golden `config.json` onto this type.
 */
export type Upsampler = 'pixelshuffledirect' | 'pixelshuffle' | 'nearest+conv' | '';
export type ResiConnection = '1conv' | '3conv';

export interface SwinIRConfig {
  upscale: number;
  inChans: number;
  imgSize: number;
  windowSize: number;
  imgRange: number;
  depths: number[];
  embedDim: number;
  numHeads: number[];
  mlpRatio: number;
  qkvBias: boolean;
  /** null means head_dim ** -0.5, as in the official code. */
  qkScale: number | null;
  upsampler: Upsampler;
  resiConnection: ResiConnection;
  patchNorm: boolean;
  ape: boolean;
}

export type ArchName = 'swinir-light' | 'swinir-classical';
export const ARCH_NAMES: readonly ArchName[] = ['swinir-light', 'swinir-classical'];

/** The configs `main_test_swinir.py define_model` builds for lightweight_sr and classical_sr. */
export function presetConfig(arch: ArchName, upscale: number): SwinIRConfig {
  const common = {
    upscale, inChans: 3, windowSize: 8, imgRange: 1.0, mlpRatio: 2, qkvBias: true, qkScale: null,
    resiConnection: '1conv' as const, patchNorm: true, ape: false,
  };
  if (arch === 'swinir-light') {
    return { ...common, imgSize: 64, depths: [6, 6, 6, 6], embedDim: 60, numHeads: [6, 6, 6, 6], upsampler: 'pixelshuffledirect' };
  }
  return { ...common, imgSize: 64, depths: [6, 6, 6, 6, 6, 6], embedDim: 180, numHeads: [6, 6, 6, 6, 6, 6], upsampler: 'pixelshuffle' };
}

/** Maps the official Python constructor kwargs (as in the golden config.json files) to SwinIRConfig. */
export function fromPythonConfig(py: Record<string, unknown>): SwinIRConfig {
  const n = (k: string, d?: number) => (py[k] === undefined ? d : Number(py[k])) as number;
  return {
    upscale: n('upscale', 2),
    inChans: n('in_chans', 3),
    imgSize: n('img_size', 64),
    windowSize: n('window_size', 7),
    imgRange: n('img_range', 1.0),
    depths: (py.depths as number[]) ?? [6, 6, 6, 6],
    embedDim: n('embed_dim', 96),
    numHeads: (py.num_heads as number[]) ?? [6, 6, 6, 6],
    mlpRatio: n('mlp_ratio', 4),
    qkvBias: py.qkv_bias === undefined ? true : Boolean(py.qkv_bias),
    qkScale: py.qk_scale == null ? null : Number(py.qk_scale),
    upsampler: ((py.upsampler as string) ?? '') as Upsampler,
    resiConnection: ((py.resi_connection as string) ?? '1conv') as ResiConnection,
    patchNorm: py.patch_norm === undefined ? true : Boolean(py.patch_norm),
    ape: Boolean(py.ape),
  };
}

/** RGB mean the official model subtracts for 3-channel inputs (a plain attribute, not in the state dict). */
export const RGB_MEAN = [0.4488, 0.4371, 0.404] as const;
