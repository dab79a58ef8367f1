import * as fs from 'node:fs';
import * as path from 'node:path';
import { dataDir } from '@harmoq/data';
import { loadStateDict, writeSafetensors } from '@harmoq/torch-io';
import { harmoq, tempFolder } from '../testing/harmoq';

const weights = (s: number) => path.join(dataDir(), `weights/house/swinir_light_x${s}_house.pth`);
const tmp = tempFolder('harmoq-quantize-');


const quantize = (out: string, ...extra: string[]) => harmoq('quantize', '--arch', 'swinir-light', '--scale', '2', '--weights', weights(2),
  '--method', 'minmax', '--wbits', '4', '--abits', '4', '--data', dataDir(), '--out', out, '--threads', '2', ...extra);
const evalQuant = (w: string, scale: string, qparams: string, ...extra: string[]) => harmoq('eval', '--arch', 'swinir-light', '--scale', scale,
  '--weights', w, '--dataset', 'Set5', '--data', dataDir(), '--quant', qparams, ...extra);
const oneLine = (s: string) => expect(s.trim().split('\n').filter((l) => l.startsWith('harmoq:'))).toHaveLength(1);

describe('harmoq quantize, then eval --quant', () => {
  const qparams = path.join(tmp, 'minmax_w4a4.json');
  beforeAll(async () => {
    const r = await quantize(qparams, '--set', 'count=8');
    expect(r.stderr).not.toMatch(/harmoq:/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/minmax W4A4 x2: 384 quantizers, 8 patches of 48x48/);
  }, 120_000);

  test('eval JSON is the float eval JSON plus method, wbits, abits; tfjs and onnx fake-quant agree within 0.01 dB on Set5 x2', async () => {
    const reports: Record<string, { psnr_y: number; images: { psnr_y: number }[] } & Record<string, unknown>> = {};
    for (const engine of ['onnx', 'tfjs']) {
      const json = path.join(tmp, `eval_${engine}.json`);
      const r = await evalQuant(weights(2), '2', qparams, '--engine', engine, '--json', json);
      expect(r.stderr).not.toMatch(/harmoq:/);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Set5 x2 minmax W4A4: PSNR-Y/);
      reports[engine] = JSON.parse(fs.readFileSync(json, 'utf8'));
    }
    const { onnx, tfjs } = reports;
    for (const key of ['model', 'weights_sha256', 'arch', 'engine', 'backend', 'dataset', 'scale', 'psnr_y', 'ssim_y', 'psnr', 'ssim', 'seconds', 'images']) {
      expect(onnx).toHaveProperty(key);
    }
    expect(onnx).toMatchObject({ method: 'minmax', wbits: 4, abits: 4 });
    expect(Math.abs(onnx.psnr_y - tfjs.psnr_y)).toBeLessThan(0.01);
    onnx.images.forEach((row, i) => expect(Math.abs(row.psnr_y - tfjs.images[i].psnr_y)).toBeLessThan(0.01));
  }, 600_000);

  test('a qparams file from another scale, arch or checkpoint is refused with both values named', async () => {
    let r = await evalQuant(weights(4), '4', qparams);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is for scale x2, but the model is x4/);
    oneLine(r.stderr);
    const original = JSON.parse(fs.readFileSync(qparams, 'utf8'));
    const edited = path.join(tmp, 'edited.json');
    fs.writeFileSync(edited, JSON.stringify({ ...original, model: { ...original.model, arch: 'swinir-classical' } }));
    r = await evalQuant(weights(2), '2', edited);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is for arch swinir-classical, but the model is swinir-light/);
    fs.writeFileSync(edited, JSON.stringify({ ...original, model: { ...original.model, checkpoint: { file: 'other.pth', sha256: '1'.repeat(64) } } }));
    r = await evalQuant(weights(2), '2', edited);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/calibrated on checkpoint other.pth \(sha256 111111111111\.\.\.\), but the model is .*swinir_light_x2_house.pth \(sha256 92878f53eaf2/);
    r = await evalQuant(weights(2), '2', path.join(tmp, 'missing.json'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read qparams file/);
  });
});

describe('harmoq quantize refuses bad input with one line, exit 2, and writes nothing', () => {
  const out = path.join(tmp, 'never.json');
  test.each([
    [['--method', 'minmaxx'], /unknown method 'minmaxx' \(did you mean 'minmax'\? choices: minmax, percentile, mse, dobi/],
    [['--wbits', '1'], /--wbits '1' is not valid \(choices: 2, 3, 4, 5, 6, 7, 8\)/],
    [['--abits', 'four'], /--abits 'four' is not valid \(choices: 2, 3, 4, 5, 6, 7, 8\)/],
    [['--preset', 'fast'], /unknown preset 'fast' \(choices: quick, paper\)/],
    [['--set', 'pct=99'], /unknown --set key 'pct' for method 'minmax'/],
    [['--set', 'sites=2dquant+convs'], /unknown site group 'convs' \(did you mean 'conv'\?/],
    [['--scale', '3'], /scale mismatch/],
  ])('%j', async (extra, message) => {
    const r = await quantize(out, ...(extra as string[]));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
    oneLine(r.stderr);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('NaN during calibration names the site and step, exits 1 and leaves an existing output untouched', async () => {
    const { stateDict } = loadStateDict(weights(2));
    const key = 'layers.2.residual_group.blocks.3.norm1.weight';
    const t = stateDict.get(key)!;
    const data = Float32Array.from(t.data as Float32Array);
    data[0] = NaN;
    stateDict.set(key, { ...t, data });
    const poisoned = path.join(tmp, 'poisoned.safetensors');
    writeSafetensors(poisoned, stateDict);
    const existing = path.join(tmp, 'existing.json');
    fs.writeFileSync(existing, 'old');
    const r = await harmoq('quantize', '--scale', '2', '--weights', poisoned, '--method', 'dobi', '--wbits', '2', '--abits', '2',
      '--data', dataDir(), '--out', existing, '--set', 'count=2');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/non-finite value NaN in the float activations at 'layers.2.residual_group.blocks.3.attn.qkv' \(calibration step 0/);
    oneLine(r.stderr);
    expect(fs.readFileSync(existing, 'utf8')).toBe('old');
  }, 120_000);
});
