import { initBackend, presetConfig, SwinIRModel, expectedShapes, isBufferKey } from '@harmoq/swinir';
import { ConfigError } from './errors';
import { parseSiteSet, quantSites, siteWeight } from './sites';

const light = presetConfig('swinir-light', 2);

describe('quantization sites', () => {
  test("SwinIR-light's default set is 2DQuant's 384 quantizers: 16 per block, convs float", () => {
    const sites = quantSites(light);
    expect(sites).toHaveLength(384);
    expect(new Set(sites.map((s) => s.id)).size).toBe(384);
    const p = 'layers.0.residual_group.blocks.0';
    expect(sites.slice(0, 16).map((s) => s.id)).toEqual([
      `${p}.attn.qkv.q.input`, `${p}.attn.qkv.q.weight`, `${p}.attn.qkv.k.input`, `${p}.attn.qkv.k.weight`,
      `${p}.attn.qkv.v.input`, `${p}.attn.qkv.v.weight`,
      `${p}.attn.q`, `${p}.attn.k`, `${p}.attn.v`, `${p}.attn.attn_map`,
      `${p}.attn.proj.input`, `${p}.attn.proj.weight`, `${p}.mlp.fc1.input`, `${p}.mlp.fc1.weight`, `${p}.mlp.fc2.input`, `${p}.mlp.fc2.weight`,
    ]);
    expect(sites.filter((s) => s.role === 'weight')).toHaveLength(24 * 6);
    expect(sites.some((s) => s.kind.startsWith('conv'))).toBe(false);
    expect(sites[sites.length - 1].id).toBe('layers.3.residual_group.blocks.5.mlp.fc2.weight');
  });

  test('the split qkv quantizers own their rows of qkv.weight: q, k, v in order', () => {
    const stateDict = new Map([...expectedShapes(light)].map(([key, shape]) => {
      const size = shape.reduce((a, b) => a * b, 1);
      return [key, { dtype: 'float32' as const, shape, data: Float32Array.from({ length: size }, (_, i) => i) }];
    }));
    const sites = quantSites(light);
    const k = sites.find((s) => s.id === 'layers.1.residual_group.blocks.2.attn.qkv.k.weight')!;
    expect(k.rows).toEqual([60, 120]);
    expect(k.shape).toEqual([60, 60]);
    const values = siteWeight(k, stateDict);
    expect(values.length).toBe(3600);
    expect(values[0]).toBe(3600);
    expect(sites.filter((s) => s.hookSite === 'layers.1.residual_group.blocks.2.attn.qkv').map((s) => s.part)).toEqual([0, 1, 2]);
  });

  test('hook sites are the model\'s own site names (tfjs hookSites / ONNX SiteHook)', async () => {
    await initBackend('cpu');
    const keys = [...expectedShapes({ ...light, depths: [1], numHeads: [6] })].filter(([key]) => !isBufferKey(key));
    const model = new SwinIRModel(new Map(keys.map(([key, shape]) => [key, {
      dtype: 'float32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
    }])), { ...light, depths: [1], numHeads: [6] });
    const names = new Set(model.hookSites().map((s) => s.site));
    model.dispose();
    for (const site of quantSites({ ...light, depths: [1], numHeads: [6] }, '2dquant+conv')) {
      expect(names.has(site.hookSite.replace(/\.weight$/, ''))).toBe(true);
    }
  });

  test('other site sets: +conv adds every conv, body-conv only the RSTB convs, fused-qkv keeps qkv whole', () => {
    expect(quantSites(light, '2dquant+conv')).toHaveLength(384 + 2 * 7);
    const body = quantSites(light, '2dquant+body-conv');
    expect(body).toHaveLength(384 + 2 * 4);
    expect(body.filter((s) => s.kind === 'conv_weight').map((s) => s.id)).toEqual([0, 1, 2, 3].map((i) => `layers.${i}.conv.weight`));
    expect(quantSites(light, '2dquant+fused-qkv')).toHaveLength(24 * (4 * 2 + 4));
    expect(quantSites(light, 'attention')).toHaveLength(24 * 4);
    const conv = quantSites(light, 'conv');
    expect(conv.map((s) => s.id).slice(0, 2)).toEqual(['conv_first.input', 'conv_first.weight']);
    expect(conv[conv.length - 1].id).toBe('upsample.0.weight');
    expect(parseSiteSet('linear+attention').spec).toBe('linear+attention');
  });

  test('an unknown group names the choices and suggests the nearest', () => {
    expect(() => parseSiteSet('2dquant+convs')).toThrow(ConfigError);
    expect(() => parseSiteSet('2dquant+convs')).toThrow(/unknown site group 'convs' \(did you mean 'conv'\?.*choices: 2dquant, linear, attention, conv, body-conv, fused-qkv/);
    expect(() => parseSiteSet('')).toThrow(/empty site set/);
  });
});
