/**
 * Quantization sites of SwinIR: which tensors get a fake quantizer, named by PyTorch state-dict path.
 *
 * The default set is exactly 2DQuant's (`build_quantized_network` in basicsr/models/2dquant_model.py, with
 * `qkv_separation: True` as every shipped yml sets it): in every Swin block, the weight and the input
 * activation of q, k and v (qkv split into three Linears, each with its own two quantizers, so the same
 * LayerNorm output is quantized three times), proj, fc1 and fc2; and in attention, q after the
 * head_dim^-0.5 scaling, k, v and the post-softmax map. Convolutions, LayerNorm, softmax, GELU and the
 * residual adds stay float. For SwinIR-light that is 24 x (6 x 2 + 4) = 384 quantizers.
 *
 * Quantizer ids:
 * - weights: the weight's state-dict path; the split qkv uses 2DQuant's module names
 *   (`<block>.attn.qkv.q.weight` = rows 0..C-1 of `<block>.attn.qkv.weight`, then k, v);
 * - Linear/Conv inputs: `<module>.input` (`<block>.attn.qkv.q.input`, `<block>.mlp.fc1.input`, `conv_first.input`);
 * - attention tensors: the official names `<block>.attn.q`, `.attn.k`, `.attn.v`, `.attn.attn_map`.
 */
import { blockPrefix, expectedShapes, type SwinIRConfig } from '@harmoq/swinir';
import type { StateDict } from '@harmoq/torch-io';
import { toFloat32 } from '@harmoq/swinir';
import { ConfigError, unknownChoice } from './errors';
import type { ChannelLayout } from './quantizer';

/** Groups of sites that a site set combines. */
export type SiteGroup = 'linear' | 'attention' | 'conv' | 'body-conv';
export const SITE_GROUPS: readonly SiteGroup[] = ['linear', 'attention', 'conv', 'body-conv'];

/** Named site sets; a spec is names and groups joined by '+', e.g. `2dquant+conv`. */
export const SITE_SET_PRESETS: Readonly<Record<string, readonly SiteGroup[]>> = {
  '2dquant': ['linear', 'attention'],
};
/** Modifier: keep qkv as one Linear (one input and one weight quantizer) instead of 2DQuant's split. */
export const FUSED_QKV = 'fused-qkv';
export const DEFAULT_SITE_SET = '2dquant';

export interface SiteSet {
  /** Canonical spec string, as recorded in qparams files. */
  spec: string;
  groups: readonly SiteGroup[];
  qkvSplit: boolean;
}

/** Parses `2dquant`, `2dquant+conv`, `linear+attention+fused-qkv`, ... */
export function parseSiteSet(spec: string = DEFAULT_SITE_SET): SiteSet {
  const tokens = spec.split('+').map((t) => t.trim()).filter((t) => t.length > 0);
  const choices = [...Object.keys(SITE_SET_PRESETS), ...SITE_GROUPS, FUSED_QKV];
  if (tokens.length === 0) throw new ConfigError(`empty site set (choices, joined by '+': ${choices.join(', ')})`, { value: spec, choices });
  const groups = new Set<SiteGroup>();
  let qkvSplit = true;
  for (const token of tokens) {
    if (token in SITE_SET_PRESETS) SITE_SET_PRESETS[token].forEach((g) => groups.add(g));
    else if ((SITE_GROUPS as readonly string[]).includes(token)) groups.add(token as SiteGroup);
    else if (token === FUSED_QKV) qkvSplit = false;
    else throw unknownChoice('site group', token, choices);
  }
  if (groups.has('conv')) groups.delete('body-conv');
  const ordered = SITE_GROUPS.filter((g) => groups.has(g));
  return { spec: tokens.join('+'), groups: ordered, qkvSplit };
}

export type QuantRole = 'weight' | 'activation';
/** What a site quantizes, as the ONNX builder's SiteInfo kinds. */
export type QuantSiteKind = 'linear_input' | 'linear_weight' | 'attention' | 'conv_input' | 'conv_weight';

export interface QuantSite {
  /** Quantizer id (see the file comment). */
  id: string;
  role: QuantRole;
  kind: QuantSiteKind;
  /** The hook site it acts at: the tfjs ActivationHook / ONNX SiteHook name (`<module>` or `<module>.weight`). */
  hookSite: string;
  /** The Linear/Conv module, for weight and input sites. */
  module?: string;
  /** 0, 1, 2 for the q, k, v parts of a split qkv. */
  part?: 0 | 1 | 2;
  /** Weights: the state-dict key and the rows [start, end) this quantizer owns. */
  weightKey?: string;
  rows?: [number, number];
  /** Weights: shape of the quantized slice (PyTorch layout). */
  shape?: number[];
  /**
   * Per-channel granularity: weights per output row; Linear inputs per feature; q/k/v and the attention
   * map per head; Conv inputs per channel.
   */
  channels: number;
  /** Swin block, for block-wise methods. */
  layer?: number;
  block?: number;
}

const QKV_PARTS = ['q', 'k', 'v'] as const;

/** Every quantizer of a site set for a config, in forward order. */
export function quantSites(config: SwinIRConfig, siteSet: SiteSet | string = DEFAULT_SITE_SET): QuantSite[] {
  const set = typeof siteSet === 'string' ? parseSiteSet(siteSet) : siteSet;
  const want = new Set(set.groups);
  const e = config.embedDim;
  const hidden = Math.floor(e * config.mlpRatio);
  const shapes = expectedShapes(config);
  const sites: QuantSite[] = [];

  const linear = (module: string, outF: number, inF: number, layer: number, block: number) => {
    sites.push({ id: `${module}.input`, role: 'activation', kind: 'linear_input', hookSite: module, module, channels: inF, layer, block });
    sites.push({
      id: `${module}.weight`, role: 'weight', kind: 'linear_weight', hookSite: `${module}.weight`, module,
      weightKey: `${module}.weight`, rows: [0, outF], shape: [outF, inF], channels: outF, layer, block,
    });
  };
  const conv = (module: string) => {
    const shape = shapes.get(`${module}.weight`)!;
    sites.push({ id: `${module}.input`, role: 'activation', kind: 'conv_input', hookSite: module, module, channels: shape[1] });
    sites.push({
      id: `${module}.weight`, role: 'weight', kind: 'conv_weight', hookSite: `${module}.weight`, module,
      weightKey: `${module}.weight`, rows: [0, shape[0]], shape, channels: shape[0],
    });
  };
  const convModules = [...shapes.entries()].filter(([k, s]) => k.endsWith('.weight') && s.length === 4).map(([k]) => k.slice(0, -'.weight'.length));
  const isBodyConv = (m: string) => /^layers\.\d+\.conv(\.\d+)?$/.test(m);
  const wantConv = (m: string) => want.has('conv') || (want.has('body-conv') && isBodyConv(m));

  // Convs before the first block (conv_first) come first, RSTB convs after their blocks, the rest at the end.
  const before = convModules.filter((m) => m === 'conv_first');
  const after = convModules.filter((m) => m !== 'conv_first' && !isBodyConv(m));
  before.filter(wantConv).forEach(conv);
  config.depths.forEach((depth, layer) => {
    const heads = config.numHeads[layer];
    for (let block = 0; block < depth; block++) {
      const p = blockPrefix(layer, block);
      if (want.has('linear')) {
        if (set.qkvSplit) {
          QKV_PARTS.forEach((name, part) => {
            const module = `${p}.attn.qkv.${name}`;
            sites.push({
              id: `${module}.input`, role: 'activation', kind: 'linear_input', hookSite: `${p}.attn.qkv`, module,
              part: part as 0 | 1 | 2, channels: e, layer, block,
            });
            sites.push({
              id: `${module}.weight`, role: 'weight', kind: 'linear_weight', hookSite: `${p}.attn.qkv.weight`, module,
              part: part as 0 | 1 | 2, weightKey: `${p}.attn.qkv.weight`, rows: [part * e, (part + 1) * e], shape: [e, e],
              channels: e, layer, block,
            });
          });
        } else {
          linear(`${p}.attn.qkv`, 3 * e, e, layer, block);
        }
      }
      if (want.has('attention')) {
        for (const name of ['q', 'k', 'v', 'attn_map']) {
          sites.push({ id: `${p}.attn.${name}`, role: 'activation', kind: 'attention', hookSite: `${p}.attn.${name}`, channels: heads, layer, block });
        }
      }
      if (want.has('linear')) {
        linear(`${p}.attn.proj`, e, e, layer, block);
        linear(`${p}.mlp.fc1`, hidden, e, layer, block);
        linear(`${p}.mlp.fc2`, e, hidden, layer, block);
      }
    }
    convModules.filter((m) => m.startsWith(`layers.${layer}.conv`)).filter(wantConv).forEach(conv);
  });
  after.filter(wantConv).forEach(conv);
  return sites;
}

/** The float32 values a weight quantizer sees (its row slice of the state-dict tensor). */
export function siteWeight(site: QuantSite, stateDict: StateDict): Float32Array {
  if (site.role !== 'weight' || !site.weightKey || !site.rows || !site.shape) {
    throw new ConfigError(`site '${site.id}' is not a weight site`);
  }
  const t = stateDict.get(site.weightKey);
  if (!t) throw new ConfigError(`state dict has no '${site.weightKey}' for quantizer '${site.id}'`, { value: site.weightKey });
  const all = toFloat32(t, site.weightKey);
  const rowSize = t.shape.slice(1).reduce((a, b) => a * b, 1);
  return all.subarray(site.rows[0] * rowSize, site.rows[1] * rowSize);
}

/** Per-channel layout of a weight slice (channels = output rows, contiguous). */
export function weightLayout(site: QuantSite): ChannelLayout {
  const shape = site.shape!;
  return { channels: shape[0], inner: shape.slice(1).reduce((a, b) => a * b, 1) };
}

/**
 * Where the channel axis of an activation site lies in a tensor of `shape`: tfjs hands Linear inputs as
 * [.., C], q/k/v/attn_map as [windows, heads, ..] and Conv inputs NHWC; ONNX Linear inputs as [tokens, C]
 * and Conv inputs NCHW.
 */
export function activationChannelAxis(site: QuantSite, rank: number, engine: 'onnx' | 'tfjs'): number {
  switch (site.kind) {
    case 'linear_input':
      return rank - 1;
    case 'attention':
      return 1;
    case 'conv_input':
      return engine === 'tfjs' ? rank - 1 : 1;
    default:
      throw new ConfigError(`site '${site.id}' is a weight site, not an activation`);
  }
}

/** The per-channel layout of an activation tensor of `shape` at `site`. */
export function activationLayout(site: QuantSite, shape: readonly number[], engine: 'onnx' | 'tfjs'): ChannelLayout {
  const axis = activationChannelAxis(site, shape.length, engine);
  return { channels: shape[axis], inner: shape.slice(axis + 1).reduce((a, b) => a * b, 1) };
}

/** Ids of the sites, with a check that none repeats (a site set bug would otherwise overwrite bounds). */
export function siteIds(sites: readonly QuantSite[]): string[] {
  const ids = sites.map((s) => s.id);
  if (new Set(ids).size !== ids.length) throw new ConfigError('duplicate quantizer ids in a site list');
  return ids;
}
