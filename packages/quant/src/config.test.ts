import { CALIBRATION_PRESETS, DEFAULT_SEED, resolveRequest } from './config';
import { ConfigError } from './errors';
import { PRESET_NAMES } from './method';
import { METHOD_NAMES, PTQ_METHODS } from './methods';

describe('the PTQ_METHODS registry', () => {
  test.each(Object.entries(PTQ_METHODS))('%s: named by its key, cited, defaults and presets valid, unknown options refused', (key, method) => {
    expect(method.name).toBe(key);
    expect(method.paper).toMatch(/\d{4}/); // a citation with a year
    expect(method.summary.length).toBeGreaterThan(10);
    expect(method.options.parse(method.defaults)).toEqual(method.defaults);
    for (const preset of PRESET_NAMES) method.options.parse({ ...method.defaults, ...(method.presets?.[preset] ?? {}) });
    expect(method.options.safeParse({ ...method.defaults, notAnOption: 1 }).success).toBe(false);
  });
});

describe('resolveRequest', () => {
  test('defaults: the quick preset, 2DQuant quantizer settings, the method defaults, seed 3407', () => {
    const r = resolveRequest({ method: 'dobi', wbits: 4, abits: 4 });
    expect(r).toEqual({
      method: 'dobi', preset: 'quick', seed: DEFAULT_SEED, wbits: 4, abits: 4,
      quantizer: { form: 'real-offset', weightGranularity: 'tensor', activationGranularity: 'tensor', weightSymmetric: false, activationSymmetric: false, sites: '2dquant' },
      calibration: CALIBRATION_PRESETS.quick,
      options: { search: 'two-sided', steps: 100 },
    });
    expect(resolveRequest({ method: 'dobi', wbits: 2, abits: 2, preset: 'paper' }).calibration.patchSize).toBe(64);
  });

  test('--set reaches method options, quantizer and calibration settings, bare or with a section', () => {
    const r = resolveRequest({
      method: 'percentile', wbits: 3, abits: 3,
      set: ['pct=99.9', 'weights=true', 'form=integer', 'calibration.count=7', 'quantizer.sites=2dquant+conv', 'augment=false'],
    });
    expect(r.options).toEqual({ pct: 99.9, weights: true });
    expect(r.quantizer.form).toBe('integer');
    expect(r.quantizer.sites).toBe('2dquant+conv');
    expect(r.calibration.count).toBe(7);
    expect(r.calibration.augment).toBe(false);
  });

  test("'<method>.<option>' is options.<option> for the request's method; another method's name is refused", () => {
    const stagesOff = ['src=false', 'options.hso=false', 'abr=false'];
    const aliased = resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, set: ['harmoq.src=false', 'harmoq.hso=false', 'harmoq.abr=false', 'harmoq.steps=50'] });
    expect(aliased.options).toEqual(resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, set: [...stagesOff, 'steps=50'] }).options);
    expect(aliased.options).toMatchObject({ src: false, hso: false, abr: false, steps: 50, gptq: true });
    expect(resolveRequest({ method: 'dobi', wbits: 4, abits: 4, set: ['dobi.steps=7'] }).options.steps).toBe(7);
    let caught: unknown;
    try {
      resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, set: ['dobi.steps=7'] });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).message).toMatch(/^--set key 'dobi\.steps' sets an option of method 'dobi', but this request's method is 'harmoq' \(its options: harmoq\.src, harmoq\.hso, harmoq\.abr, /);
    expect((caught as ConfigError).choices).toContain('harmoq.steps');
    expect(() => resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, set: ['harmoq.srcc=false'] }))
      .toThrow(/unknown --set key 'harmoq\.srcc' for method 'harmoq' \(did you mean 'harmoq\.src'\?/);
    expect(() => resolveRequest({ method: 'harmoq', wbits: 2, abits: 2, set: ['harmoq.src=maybe'] })).toThrow(/invalid options for method 'harmoq': src: /);
  });

  test('bad input names the value and the choices', () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(err(() => resolveRequest({ method: 'minmaxx', wbits: 4, abits: 4 })))
      .toBe(`unknown method 'minmaxx' (did you mean 'minmax'? choices: ${METHOD_NAMES.join(', ')})`);
    expect(err(() => resolveRequest({ method: 'minmax', wbits: 1, abits: 4 }))).toMatch(/--wbits 1 is not supported \(choices: 2, 3, 4, 5, 6, 7, 8\)/);
    expect(err(() => resolveRequest({ method: 'minmax', wbits: 4, abits: 9 }))).toMatch(/--abits 9/);
    expect(err(() => resolveRequest({ method: 'minmax', wbits: 4, abits: 4, preset: 'fast' }))).toMatch(/unknown preset 'fast' \(choices: quick, paper\)/);
    expect(err(() => resolveRequest({ method: 'percentile', wbits: 4, abits: 4, set: ['pcts=99'] }))).toMatch(/unknown --set key 'pcts' for method 'percentile' \(did you mean 'pct'\?/);
    expect(err(() => resolveRequest({ method: 'percentile', wbits: 4, abits: 4, set: ['pct=40'] }))).toMatch(/invalid options for method 'percentile': pct: /);
    expect(err(() => resolveRequest({ method: 'minmax', wbits: 4, abits: 4, set: ['form=log'] }))).toMatch(/invalid quantizer settings: form: /);
    expect(err(() => resolveRequest({ method: 'minmax', wbits: 4, abits: 4, set: ['count'] }))).toMatch(/--set 'count' is not key=value/);
    expect(err(() => resolveRequest({ method: 'minmax', wbits: 4, abits: 4, seed: -1 }))).toMatch(/seed -1/);
  });
});
