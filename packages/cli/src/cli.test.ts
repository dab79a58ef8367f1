import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dataDir, goldenDir, readImage } from '@harmoq/data';
import { readSafetensorsFile, loadStateDict } from '@harmoq/torch-io';
import { harmoq, tempFolder } from './testing/harmoq';

const golden = goldenDir();
const weights = (s: number) => path.join(dataDir(), `weights/house/swinir_light_x${s}_house.pth`);
const tmp = tempFolder('harmoq-cli-');


describe('harmoq eval reproduces the official test script on the stand-in checkpoints', () => {
  test.each([
    [2, 'Set5'], [4, 'Set5'], [2, 'Set14'], [4, 'Set14'],
  ])('x%i %s: PSNR-Y within 0.005 dB and SSIM-Y within 2e-4 of golden, per image and on average', async (scale, dataset) => {
    const json = path.join(tmp, `eval_x${scale}_${dataset}.json`);
    const r = await harmoq('eval', '--arch', 'swinir-light', '--scale', String(scale), '--weights', weights(scale),
      '--dataset', dataset, '--data', dataDir(), '--json', json);
    expect(r.stderr).not.toMatch(/harmoq:/);
    expect(r.code).toBe(0);
    const got = JSON.parse(fs.readFileSync(json, 'utf8'));
    const want = JSON.parse(fs.readFileSync(path.join(golden, `house_x${scale}_${dataset.toLowerCase()}/results.json`), 'utf8'));
    for (const key of ['psnr_y', 'ssim_y', 'psnr', 'ssim', 'seconds', 'backend', 'images']) expect(got).toHaveProperty(key);
    expect(Math.abs(got.psnr_y - want.average.psnr_y)).toBeLessThan(0.005);
    expect(Math.abs(got.ssim_y - want.average.ssim_y)).toBeLessThan(2e-4);
    expect(got.images.map((i: { name: string }) => i.name)).toEqual(want.images.map((i: { name: string }) => i.name));
    got.images.forEach((row: { psnr_y: number; ssim_y: number }, i: number) => {
      expect(Math.abs(row.psnr_y - want.images[i].psnr_y)).toBeLessThan(0.005);
      expect(Math.abs(row.ssim_y - want.images[i].ssim_y)).toBeLessThan(2e-4);
    });
  }, 600_000);
});

describe('bad input gets one clear line and exit 2, before any model runs', () => {
  const bad = (f: string) => path.join(golden, 'bad', f);
  const evalWith = (w: string, scale = '2', extra: string[] = []) =>
    harmoq('eval', '--arch', 'swinir-light', '--scale', scale, '--weights', w, '--dataset', 'Set5',
      '--json', path.join(tmp, 'never.json'), ...extra);

  test.each([
    ['truncated.pth', /truncated or corrupt checkpoint: no zip end-of-central-directory record/],
    ['not_a_checkpoint.pth', /not a PyTorch checkpoint: starts with the PNG signature 89 50 4E 47/],
    ['forbidden_global.pth', /forbidden pickle global 'posix system'/],
    ['forbidden_global_os.pth', /forbidden pickle global 'os system'/],
    ['wrong_arch.pth', /classical pixelshuffle head, expected pixelshuffledirect/],
    ['wrong_scale.pth', /scale mismatch/],
  ])('%s', async (file, message) => {
    const r = await evalWith(bad(file));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout + r.stderr).not.toMatch(/HARMOQ_FORBIDDEN_GLOBAL_WAS_EXECUTED/);
    expect(fs.existsSync(path.join(tmp, 'never.json'))).toBe(false);
  });

  test('a --scale that does not match the checkpoint', async () => {
    const r = await evalWith(weights(2), '4');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/scale mismatch.*x2.*expected.*x4|scale mismatch/);
    expect(r.stderr).toMatch(/upsample\.0\.weight/);
  });

  test('a data folder without the dataset names the folder and where to get the set', async () => {
    const empty = fs.mkdtempSync(path.join(tmp, 'data-'));
    const r = await evalWith(weights(2), '2', ['--data', empty]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(empty);
    expect(r.stderr).toMatch(/Set5/);
  });

  test('an unknown dataset, engine or scale lists the choices', async () => {
    let r = await harmoq('eval', '--scale', '2', '--weights', weights(2), '--dataset', 'Set6');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/'Set6'.*Set5, Set14, B100, Urban100, Manga109/);
    r = await harmoq('eval', '--scale', '5', '--weights', weights(2), '--dataset', 'Set5');
    expect(r).toMatchObject({ code: 2 });
    expect(r.stderr).toMatch(/--scale '5'.*choices: 2, 3, 4, 8/);
    r = await harmoq('eval', '--scale', '2', '--weights', weights(2), '--dataset', 'Set5', '--engine', 'torch');
    expect(r.stderr).toMatch(/--engine 'torch'.*onnx, tfjs/);
  });

  test('a corrupt PNG given to upscale names the file', async () => {
    const png = path.join(tmp, 'corrupt.png');
    fs.writeFileSync(png, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(40, 7)]));
    const r = await harmoq('upscale', '--weights', weights(2), '--scale', '2', png, '-o', path.join(tmp, 'x.png'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(png);
    expect(fs.existsSync(path.join(tmp, 'x.png'))).toBe(false);
  });

  test('a missing required option and an unknown option', async () => {
    let r = await harmoq('eval', '--scale', '2', '--dataset', 'Set5');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--weights/);
    r = await harmoq('eval', '--scale', '2', '--weights', weights(2), '--dataset', 'Set5', '--scael', '2');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--scael'/);
  });
});

describe('upscale, convert and help', () => {
  test('upscale writes an s-times larger PNG, tiled or not, identical where tiles cover the image', async () => {
    const input = path.join(dataDir(), 'benchmarks/Set5/LR_bicubic/X4/birdx4.png');
    const whole = path.join(tmp, 'bird_whole.png');
    const first = await harmoq('upscale', '--weights', weights(4), '--scale', '4', input, '-o', whole);
    expect(first.stderr).not.toMatch(/harmoq:/);
    expect(first.code).toBe(0);
    const lr = await readImage(input);
    const sr = await readImage(whole);
    expect([sr.width, sr.height]).toEqual([lr.width * 4, lr.height * 4]);
    const tiled = path.join(tmp, 'bird_tiled.png');
    expect((await harmoq('upscale', '--weights', weights(4), '--scale', '4', '--tile', '48', input, '-o', tiled)).code).toBe(0);
    const t = await readImage(tiled);
    let maxDiff = 0;
    for (let i = 0; i < t.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(t.data[i] - sr.data[i]));
    expect(maxDiff).toBeGreaterThan(0); // tiles see less context, so they do differ a little ...
    expect(maxDiff).toBeLessThan(64); // ... but stay an image of the same bird
  }, 120_000);

  test('convert writes safetensors that hold the same tensors', async () => {
    const out = path.join(tmp, 'x2.safetensors');
    const r = await harmoq('convert', weights(2), out);
    expect(r.code).toBe(0);
    const src = loadStateDict(weights(2)).stateDict;
    const dst = readSafetensorsFile(out).stateDict;
    expect([...dst.keys()]).toEqual([...src.keys()]);
    const key = 'layers.0.residual_group.blocks.0.attn.qkv.weight';
    expect(Array.from(dst.get(key)!.data as Float32Array)).toEqual(Array.from(src.get(key)!.data as Float32Array));
  });

  test('the installed bin prints help for every command', () => {
    const bin = path.resolve(__dirname, '../bin/harmoq.js');
    for (const cmd of [[], ['eval'], ['upscale'], ['convert']]) {
      const r = spawnSync(process.execPath, [bin, ...cmd, '--help'], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/Usage: harmoq/);
    }
    const r = spawnSync(process.execPath, [bin, 'eval', '--scale', 'x'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  }, 60_000);
});
