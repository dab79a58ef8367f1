import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { dataDir } from '@harmoq/data';
import { decodeModel } from '@harmoq/swinir';
import { sha256File } from '@harmoq/torch-io';
import { harmoq, tempFolder } from '../testing/harmoq';

const weights = (s: number) => path.join(dataDir(), `weights/house/swinir_light_x${s}_house.pth`);
const tmp = tempFolder('harmoq-export-');
const qparams = path.join(tmp, 'minmax_w4a4.json');
const exportTo = (out: string, ...extra: string[]) => harmoq('export', '--arch', 'swinir-light', '--scale', '2', '--weights', weights(2),
  '--quant', qparams, '--onnx', out, '--size', '16x24', ...extra);
const oneLine = (s: string) => expect(s.trim().split('\n').filter((l) => l.startsWith('harmoq:'))).toHaveLength(1);

beforeAll(async () => {
  const r = await harmoq('quantize', '--arch', 'swinir-light', '--scale', '2', '--weights', weights(2), '--method', 'minmax',
    '--wbits', '4', '--abits', '4', '--data', dataDir(), '--out', qparams, '--threads', '2', '--set', 'count=2', '--set', 'patchSize=16');
  expect(r.stderr).not.toMatch(/harmoq:/);
  expect(r.code).toBe(0);
}, 120_000);

test('packed and fakequant files run in onnxruntime with identical outputs; packed is smaller; metadata recorded', async () => {
  const outputs: Float32Array[] = [];
  const sizes: number[] = [];
  for (const format of ['fakequant', 'packed']) {
    const out = path.join(tmp, `${format}.onnx`);
    const r = await exportTo(out, '--format', format);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${format} minmax W4A4 x2 16x24: \\d+ bytes`));
    const bytes = fs.readFileSync(out);
    sizes.push(bytes.length);
    const meta = Object.fromEntries((decodeModel(bytes).metadataProps ?? []).map((p) => [p.key, p.value]));
    expect(meta).toMatchObject({ method: 'minmax', wbits: '4', abits: '4', format, qparams_sha256: sha256File(qparams), scale: '2', size: '16x24' });
    expect(meta.commit).toMatch(/^([0-9a-f]{40}|unknown)$/);
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
    const input = Float32Array.from({ length: 3 * 16 * 24 }, (_, i) => ((i * 37) % 101) / 100);
    outputs.push((await session.run({ input: new ort.Tensor('float32', input, [1, 3, 16, 24]) })).output.data as Float32Array);
    await session.release();
  }
  expect(outputs[1]).toEqual(outputs[0]);
  expect(sizes[1]).toBeLessThan(sizes[0] * 0.85);
}, 120_000);

test('bad inputs exit 2 with one line naming the value', async () => {
  const out = path.join(tmp, 'bad.onnx');
  let r = await exportTo(out, '--format', 'int3');
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/export format 'int3' is not valid \(choices: qdq, fakequant, packed\)/);
  oneLine(r.stderr);
  r = await exportTo(out, '--size', '16by24');
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--size '16by24' is not valid/);
  r = await exportTo(path.join(tmp, 'no/such/folder/x.onnx'));
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/folder .* does not exist/);
  const folder = path.join(tmp, 'a-folder.onnx');
  fs.mkdirSync(folder);
  r = await exportTo(folder, '--format', 'fakequant');
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--onnx '.*a-folder.onnx' cannot be written/);
  oneLine(r.stderr);
  r = await harmoq('export', '--arch', 'swinir-light', '--scale', '4', '--weights', weights(4), '--quant', qparams, '--onnx', out);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/is for scale x2, but the model is x4/);
  oneLine(r.stderr);
  const broken = path.join(tmp, 'broken.json');
  fs.writeFileSync(broken, '{"format": "harmoq-qparams", "version": 3}');
  r = await harmoq('export', '--scale', '2', '--weights', weights(2), '--quant', broken, '--onnx', out);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/invalid qparams file/);
  oneLine(r.stderr);
  r = await harmoq('export', '--scale', '2', '--weights', weights(2), '--quant', path.join(tmp, 'missing.json'), '--onnx', out);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/cannot read qparams file/);
  expect(fs.existsSync(out)).toBe(false);
}, 60_000);
