import fc from 'fast-check';
import { formatPythonFloat, parsePythonFloat } from './pyfloat';
import { emitYamlMap, emitYamlScalar, parseYamlMap } from './yaml';
import { pythonWithYaml } from './testing/python';

const python = pythonWithYaml();
const withPython = python ? test : test.skip;

describe('formatPythonFloat (metric values as MLflow writes them)', () => {
  test.each([
    [0.5, '0.5'], [3, '3.0'], [-2.5, '-2.5'], [100, '100.0'], [1e-5, '1e-05'], [1e-4, '0.0001'], [0.00009999, '9.999e-05'],
    [1e16, '1e+16'], [1234567890123456, '1234567890123456.0'], [12345678901234567, '1.2345678901234568e+16'],
    [1.5e-7, '1.5e-07'], [0.1 + 0.2, '0.30000000000000004'], [5e-324, '5e-324'], [-0, '-0.0'], [0, '0.0'],
    [NaN, 'nan'], [Infinity, 'inf'], [-Infinity, '-inf'], [32.123456789, '32.123456789'],
  ])('%p -> %s', (value, text) => {
    expect(formatPythonFloat(value)).toBe(text);
    expect(Object.is(parsePythonFloat(text), value) || (Number.isNaN(value) && Number.isNaN(parsePythonFloat(text)))).toBe(true);
  });

  test('round-trips every double', () => {
    fc.assert(fc.property(fc.double({ noNaN: true }), (x) => Object.is(parsePythonFloat(formatPythonFloat(x)), x)), {
      seed: 11, numRuns: 2000,
    });
  });

  withPython('matches Python repr() on random doubles', () => {
    // -0 is left out: JSON, the way the values reach Python, has no negative zero.
    const xs = fc.sample(fc.double({ noNaN: true, noDefaultInfinity: true }), { seed: 5, numRuns: 1000 }).filter((x) => !Object.is(x, -0));
    const reprs = python!('import json,sys; print(json.dumps([repr(float(x)) for x in json.load(sys.stdin)]))', xs) as string[];
    expect(xs.map(formatPythonFloat)).toEqual(reprs);
  });
});

describe('meta.yaml emitter and reader', () => {
  test('quotes exactly the strings that would read back as another type', () => {
    expect(emitYamlScalar('0')).toBe("'0'");
    expect(emitYamlScalar('123456789012345678')).toBe("'123456789012345678'");
    expect(emitYamlScalar('1.5')).toBe("'1.5'");
    expect(emitYamlScalar('yes')).toBe("'yes'");
    expect(emitYamlScalar('null')).toBe("'null'");
    expect(emitYamlScalar('')).toBe("''");
    expect(emitYamlScalar('2024-01-02')).toBe("'2024-01-02'");
    expect(emitYamlScalar('1:30')).toBe("'1:30'");
    expect(emitYamlScalar('file:///tmp/mlruns/0')).toBe('file:///tmp/mlruns/0');
    expect(emitYamlScalar('mlflow-artifacts:/1/abc/artifacts')).toBe('mlflow-artifacts:/1/abc/artifacts');
    expect(emitYamlScalar('main x2 bits=4')).toBe('main x2 bits=4');
    expect(emitYamlScalar('a: b')).toBe("'a: b'");
    expect(emitYamlScalar("it's")).toBe("it's");
    expect(emitYamlScalar("'quoted'")).toBe("'''quoted'''");
    expect(emitYamlScalar('two\nlines')).toBe('"two\\nlines"');
    expect(emitYamlScalar(null)).toBe('null');
    expect(emitYamlScalar(4)).toBe('4');
    expect(emitYamlScalar([])).toBe('[]');
  });

  test('writes sorted keys, one per line', () => {
    expect(emitYamlMap({ name: 'Default', experiment_id: '0', creation_time: 17 })).toBe(
      "creation_time: 17\nexperiment_id: '0'\nname: Default\n",
    );
  });

  test('reads back what it writes, for any text', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.stringMatching(/^[a-z_]{1,12}$/), fc.oneof(fc.string({ unit: 'binary' }), fc.integer(), fc.constant(null))), (map) => {
        expect(parseYamlMap(emitYamlMap(map))).toEqual(map);
      }),
      { seed: 3, numRuns: 500 },
    );
  });

  test('reads legacy and PyYAML-folded files', () => {
    const text = "experiment_id: 3\nname: a long name\n  that PyYAML folded\nartifact_location: 'it''s'\ntags: []\nnested:\n  a: 1\n";
    expect(parseYamlMap(text)).toEqual({ experiment_id: 3, name: 'a long name that PyYAML folded', artifact_location: "it's", tags: [] });
  });

  withPython('is byte-identical to PyYAML safe_dump for the values MLflow files hold, and PyYAML reads back any value', () => {
    const ordinary = {
      artifact_location: 'file:///home/user/repo/mlruns/123456789012345678', artifact_uri: 'mlflow-artifacts:/1/ab12/artifacts',
      creation_time: 1700000000000, deleted_time: null, end_time: null, entry_point_name: '', experiment_id: '0',
      lifecycle_stage: 'active', name: 'asymmetry', run_id: '0a1b2c3d4e5f67890a1b2c3d4e5f6789', run_name: 'main x4 bits=4',
      run_uuid: '12345678901234567890123456789012', source_type: 4, status: 3, tags: [], user_id: 'alice', odd: "it's: 'x' #1",
      yes_word: 'yes', dash: '- a', colon_end: 'a:', hash: 'a #b', unicode: 'Zürich ✓', tilde: '~', float_text: '1e5', dotted: '1.5',
    };
    const dumped = python!('import json,sys,yaml; print(json.dumps(yaml.safe_dump(json.load(sys.stdin), default_flow_style=False, allow_unicode=True)))', ordinary);
    expect(emitYamlMap(ordinary)).toBe(dumped);
    const tricky = ['\u00a0x', 'a\u2028b', '\u0085', ' lead', 'trail ', '#x', '- x', '? x', ': x', 'a\tb', '\ufeffbom', '@x', '`x', '%x', '!x', '&x', '*x', '|x', '>x', '"x', "'x", '[x', '{x', ',x', '---', '...', 'x\r\ny', '\\x'];
    const strings = [...tricky, ...fc.sample(fc.string({ unit: 'binary', maxLength: 40 }), { seed: 9, numRuns: 300 })]
      .filter((s) => !/[\ud800-\udfff]/.test(s));
    const docs = strings.map((s) => emitYamlMap({ v: s }));
    const loaded = python!('import json,sys,yaml; print(json.dumps([yaml.safe_load(d)["v"] for d in json.load(sys.stdin)]))', docs);
    expect(loaded).toEqual(strings);
  });
});
