#!/usr/bin/env zx
// Deployment benchmark (issue 12): exported SwinIR-light models on stock onnxruntime CPU, FP32 against the
// quantized exports, x2 and x4, in one run. Per model: file size, bytes of the quantized weights, peak resident
// memory, seconds per Set5 pass (official protocol, whole images) at 1 thread and all cores, and PSNR-Y/SSIM-Y.
// Writes results/bench/deploy.json (atomic) and prints the table with the ratios to FP32.
//
//   npm run bench:deploy [-- --method dobi] [--scales 2,4] [--reps 2] [--threads N] [--data DIR] [--out FILE] [--quick]
//
// Models: FP32; W8A8 `fakequant` (the fake-quant twin); W8A8, W4A8, W4A4 `qdq` (integer Q/DQ, uint4 weights at
// 4 bits); W2A2 `packed` and `qdq`. Calibrated by `harmoq quantize --method M` (quick preset, seed 3407) and
// exported by the same code as `harmoq export`, once per padded Set5 image size (the graph is built per size).
// Every timing runs in its own child process that loads the .onnx files with a plain
// `InferenceSession.create(file, { intraOpNumThreads })`, no custom ops, so peak RSS is per model and thread count;
// `baseline_rss_mb` is the same child without a session. --quick: x4 only, 1 rep (a smoke run).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { minimist } from 'zx';
import { machine, writeJsonAtomic } from './bench-common.mjs';

const SCRIPT = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SCRIPT), '..');
const CHILD_MARK = '@@bench-result ';
const args = minimist(process.argv.slice(2), { string: ['child', 'spec', 'method', 'scales', 'data', 'out', 'threads', 'reps'], boolean: ['quick'] });

if (args.child) {
  await runChild(args.child, JSON.parse(args.spec ?? '{}'));
  process.exit(0);
}

// ---------------------------------------------------------------- parent
const MODELS = [
  { label: 'FP32', format: 'float' },
  { label: 'W8A8 fakequant', wbits: 8, abits: 8, format: 'fakequant' },
  { label: 'W8A8 qdq', wbits: 8, abits: 8, format: 'qdq' },
  { label: 'W4A8 qdq', wbits: 4, abits: 8, format: 'qdq' },
  { label: 'W4A4 qdq', wbits: 4, abits: 4, format: 'qdq' },
  { label: 'W2A2 packed', wbits: 2, abits: 2, format: 'packed' },
  { label: 'W2A2 qdq', wbits: 2, abits: 2, format: 'qdq' },
];

function fail(message) {
  console.error(`bench-deploy: ${message}`);
  process.exit(1);
}

const quick = Boolean(args.quick);
const dataDir = path.resolve(args.data ?? process.env.HARMOQ_DATA ?? path.join(REPO, '../shared/data'));
const method = args.method ?? 'dobi';
const scales = (args.scales ?? (quick ? '4' : '2,4')).split(',').map(Number);
const reps = Number(args.reps ?? (quick ? 1 : 2));
const allCores = Number(args.threads ?? (os.availableParallelism?.() ?? os.cpus().length));
const outFile = path.resolve(args.out ?? path.join(REPO, 'results/bench/deploy.json'));
for (const s of scales) if (![2, 3, 4, 8].includes(s)) fail(`--scales: ${s} is not one of 2, 3, 4, 8`);
if (!Number.isInteger(reps) || reps < 1) fail(`--reps '${args.reps}' must be a positive integer`);
const weightsFor = (scale) => path.join(dataDir, `weights/house/swinir_light_x${scale}_house.pth`);
for (const s of scales) if (!fs.existsSync(weightsFor(s))) fail(`${weightsFor(s)} not found (set HARMOQ_DATA or --data)`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-bench-deploy-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

function run(cmd, argv, what) {
  const r = spawnSync(cmd, argv, { cwd: REPO, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, HARMOQ_DATA: dataDir } });
  if (r.status !== 0) fail(`${what} failed: ${(r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ').slice(0, 600)}`);
  return r.stdout;
}

function child(kind, spec) {
  const started = Date.now();
  const out = run(process.execPath, ['--import', 'tsx', SCRIPT, '--child', kind, '--spec', JSON.stringify({ ...spec, dataDir })], `${kind} ${spec.label ?? ''}`);
  const line = out.split('\n').find((l) => l.startsWith(CHILD_MARK));
  if (!line) fail(`${kind} ${spec.label ?? ''}: no result line`);
  process.stdout.write(`  ${kind} ${spec.label ?? ''}${spec.threads ? ` (${spec.threads} thread${spec.threads > 1 ? 's' : ''})` : ''}: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return JSON.parse(line.slice(CHILD_MARK.length));
}

const report = {
  benchmark: 'exported SwinIR-light (house stand-in weights) on stock onnxruntime-node CPU, Set5, official protocol, whole images',
  method, preset: 'quick', seed: 3407, reps,
  machine: machine(REPO),
  scales: {},
};
console.log(`bench-deploy: ${method}, scales ${scales.join(', ')}, ${allCores} cores, best of ${reps}${quick ? ' (quick)' : ''}`);
if (os.loadavg()[0] > 0.5) console.log(`warning: load average ${os.loadavg()[0].toFixed(2)}; other jobs skew timings (ratios are measured in this run)`);

const threadCounts = [...new Set([1, allCores])];
for (const scale of scales) {
  const weights = weightsFor(scale);
  const qparams = {};
  for (const { wbits, abits } of MODELS.filter((m) => m.wbits)) {
    const key = `W${wbits}A${abits}`;
    if (qparams[key]) continue;
    qparams[key] = path.join(work, `x${scale}-${key}.json`);
    const started = Date.now();
    run(process.execPath, [path.join(REPO, 'packages/cli/bin/harmoq.js'), 'quantize', '--arch', 'swinir-light', '--scale', String(scale), '--weights', weights,
      '--method', method, '--wbits', String(wbits), '--abits', String(abits), '--preset', 'quick', '--out', qparams[key]], `harmoq quantize ${key} x${scale}`);
    console.log(`  quantize x${scale} ${method} ${key}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const models = child('export', { scale, weights, dir: path.join(work, `x${scale}`), models: MODELS.map((m) => ({ ...m, qparams: m.wbits ? qparams[`W${m.wbits}A${m.abits}`] : null })), label: `x${scale}` });
  const baseline = child('baseline', { scale, label: `x${scale}` });
  const rows = [];
  for (const m of models) {
    const row = { model: m.label, format: m.format, file_bytes_64x64: m.file_bytes_64x64, weight_values: m.weight_values, weight_bytes: m.weight_bytes, snapped: m.snapped, float_weights: m.float_weights };
    for (const threads of threadCounts) {
      const r = child('time', { scale, files: m.files, threads, reps, label: `x${scale} ${m.label}` });
      row[`set5_s_${threads}t`] = r.pass_s;
      row[`peak_rss_mb_${threads}t`] = r.peak_rss_mb;
      row.psnr_y = r.psnr_y;
      row.ssim_y = r.ssim_y;
    }
    rows.push(row);
  }
  const fp = rows[0];
  const twin = rows.find((r) => r.model === 'W8A8 fakequant');
  for (const r of rows) {
    for (const t of threadCounts) r[`speedup_${t}t`] = Number((fp[`set5_s_${t}t`] / r[`set5_s_${t}t`]).toFixed(3));
    r.weight_shrink = Number((fp.weight_bytes / r.weight_bytes).toFixed(2));
    r.psnr_y_vs_fp32 = Number((r.psnr_y - fp.psnr_y).toFixed(4));
  }
  const w8 = rows.find((r) => r.model === 'W8A8 qdq');
  const w4 = rows.find((r) => r.model === 'W4A4 qdq');
  report.scales[`x${scale}`] = {
    baseline_rss_mb: baseline.rss_mb, rows,
    targets: {
      'W8A8 qdq >= 1.5x faster than FP32 (all cores)': { value: w8[`speedup_${allCores}t`], met: w8[`speedup_${allCores}t`] >= 1.5 },
      'W8A8 qdq >= 1.5x faster than FP32 (1 thread)': { value: w8.speedup_1t, met: w8.speedup_1t >= 1.5 },
      'W8A8 qdq loses < 0.1 dB PSNR-Y against its fake-quant twin': { value: Number((w8.psnr_y - twin.psnr_y).toFixed(4)), met: twin.psnr_y - w8.psnr_y < 0.1 },
      'weights >= 4x smaller at W8': { value: w8.weight_shrink, met: w8.weight_shrink >= 4 },
      'weights >= 8x smaller at W4': { value: w4.weight_shrink, met: w4.weight_shrink >= 8 },
    },
  };
}
report.machine.load_average_at_end = os.loadavg().map((v) => Number(v.toFixed(2)));

writeJsonAtomic(outFile, report);

for (const [scale, s] of Object.entries(report.scales)) {
  console.log(`\nSwinIR-light ${scale}, ${method}, Set5 (baseline RSS of a child without a model: ${s.baseline_rss_mb.toFixed(0)} MB)`);
  const head = ['model', 'file (64x64)', 'weight bytes', 'shrink', ...threadCounts.flatMap((t) => [`s/Set5 ${t}t`, `speed-up ${t}t`, `peak MB ${t}t`]), 'PSNR-Y', 'dPSNR', 'SSIM-Y'];
  const lines = s.rows.map((r) => [r.model, r.file_bytes_64x64, r.weight_bytes, `${r.weight_shrink}x`,
    ...threadCounts.flatMap((t) => [r[`set5_s_${t}t`].toFixed(2), `${r[`speedup_${t}t`].toFixed(2)}x`, r[`peak_rss_mb_${t}t`].toFixed(0)]),
    r.psnr_y.toFixed(4), r.psnr_y_vs_fp32.toFixed(4), r.ssim_y.toFixed(4)].map(String));
  console.log(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|\n${lines.map((l) => `| ${l.join(' | ')} |`).join('\n')}`);
  for (const [name, t] of Object.entries(s.targets)) console.log(`  ${t.met ? 'met ' : 'MISS'} ${name}: ${t.value}`);
}
console.log(`wrote ${path.relative(REPO, outFile)}`);

// ---------------------------------------------------------------- children
async function set5(data, scale, dir) {
  return Promise.all(data.listBenchmark('Set5', scale, dir).map(async (e) => ({ name: e.name, ...(await data.loadPair(e, scale)) })));
}

async function runChild(kind, spec) {
  const data = await import(path.join(REPO, 'packages/data/src/index.ts'));
  const engine = await import(path.join(REPO, 'packages/engine/src/index.ts'));
  const emit = (result) => console.log(CHILD_MARK + JSON.stringify(result));
  const rssMb = () => process.resourceUsage().maxRSS / 1024;
  const images = await set5(data, spec.scale, spec.dataDir);

  if (kind === 'export') {
    const quant = await import(path.join(REPO, 'packages/quant/src/index.ts'));
    const swinir = await import(path.join(REPO, 'packages/swinir/src/index.ts'));
    const torchIo = await import(path.join(REPO, 'packages/torch-io/src/index.ts'));
    const checkpoint = torchIo.loadStateDict(spec.weights).stateDict;
    const config = swinir.inferConfig(checkpoint);
    fs.mkdirSync(spec.dir, { recursive: true });
    const sizes = images.map(({ lr }) => engine.flipPadToWindow(engine.imageToTensor(lr), config.windowSize).shape.slice(2));
    const out = [];
    for (const [i, m] of spec.models.entries()) {
      const build = (height, width) => {
        if (m.format === 'float') {
          const model = swinir.buildSwinIROnnx(config, checkpoint, { height, width, biasMask: 'separate' });
          // The float bytes of the weights the quantized models quantize (the default site set's weight sites).
          const n = quant.quantSites(config).filter((s) => s.role === 'weight').reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
          return { bytes: quant.finishModel(model, checkpoint, { format: 'float' }).bytes, stats: { weightValues: n, weightBytes: 4 * n, snapped: 0, floatWeights: [] } };
        }
        const { plan, bounds } = quant.qparamsPlan(quant.readQParams(m.qparams), m.qparams);
        const { model, stats } = quant.exportQuantizedOnnx(plan, bounds, checkpoint, { format: m.format, height, width, metadata: { method: 'bench' } });
        return { bytes: model, stats };
      };
      const reference = build(64, 64);
      const files = images.map(({ name }, k) => {
        const file = path.join(spec.dir, `${i}-${name}.onnx`);
        fs.writeFileSync(file, build(sizes[k][0], sizes[k][1]).bytes);
        return { name, file };
      });
      out.push({
        label: m.label, format: m.format, files, file_bytes_64x64: reference.bytes.length, weight_values: reference.stats.weightValues,
        weight_bytes: reference.stats.weightBytes, snapped: reference.stats.snapped, float_weights: reference.stats.floatWeights.length,
      });
    }
    emit(out);
    return;
  }

  const ort = await import('onnxruntime-node');
  if (kind === 'baseline') {
    emit({ rss_mb: rssMb() });
    return;
  }

  if (kind === 'time') {
    const metrics = await import(path.join(REPO, 'packages/metrics/src/index.ts'));
    let pass = 0, psnrY = 0, ssimY = 0;
    for (const { name, lr, hr } of images) {
      const { file } = spec.files.find((f) => f.name === name);
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: spec.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      const x = engine.flipPadToWindow(engine.imageToTensor(lr), 8);
      const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x.data, x.shape) };
      let y = await session.run(feeds);
      let best = Infinity;
      for (let r = 0; r < spec.reps; r++) {
        const t = performance.now();
        y = await session.run(feeds);
        best = Math.min(best, performance.now() - t);
      }
      pass += best / 1000;
      const out = y[session.outputNames[0]];
      const [, c, hs, ws] = out.dims;
      const h = lr.height * spec.scale, w = lr.width * spec.scale;
      const cropped = new Float32Array(c * h * w);
      for (let ch = 0; ch < c; ch++) for (let row = 0; row < h; row++) cropped.set(out.data.subarray((ch * hs + row) * ws, (ch * hs + row) * ws + w), (ch * h + row) * w);
      const sr = engine.tensorToImage({ data: cropped, shape: [1, c, h, w] });
      const m = metrics.calculateAll(sr, hr, spec.scale);
      psnrY += m.psnr_y / images.length;
      ssimY += m.ssim_y / images.length;
      await session.release();
    }
    emit({ pass_s: pass, peak_rss_mb: rssMb(), psnr_y: psnrY, ssim_y: ssimY });
    return;
  }
  throw new Error(`unknown child kind '${kind}'`);
}
