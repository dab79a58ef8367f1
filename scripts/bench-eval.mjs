#!/usr/bin/env zx
// Inference speed of SwinIR-light x2 (house weights) on Set5 with the official test protocol, per engine:
// onnxruntime (1 thread and all cores), tfjs wasm, tfjs cpu (one small crop, extrapolated), and PyTorch eager
// through the official SwinIR code when available. Also: the machine's FP32 MatMul peak in onnxruntime,
// achieved GFLOP/s (analytic count, see swinirFlops), onnxruntime's profiler top operators, and formulation /
// session-option alternatives. Writes results/bench/eval.json (atomic) and prints a summary.
//
//   npm run bench:eval [-- --pytorch-swinir ../SwinIR] [--quant QPARAMS] [--threads N] [--quick] [--data DIR] [--out FILE]
//
// --quant: also time the fake-quantized model of a `harmoq quantize` qparams file (same weights) on all cores.
//
// Every measurement runs in its own child process: onnxruntime's denormal flush is a per-thread CPU flag that
// outlives a session, and tfjs backends are process-global, so sharing a process would contaminate results.
// Nothing is installed or downloaded; PyTorch is used only if `python3 -c 'import torch'` works.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { minimist } from 'zx';
import { machine, writeJsonAtomic } from './bench-common.mjs';

const SCRIPT = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SCRIPT), '..');
const args = minimist(process.argv.slice(2), { string: ['child', 'pytorch-swinir', 'data', 'out', 'spec', 'quant'], boolean: ['quick'] });
const CHILD_MARK = '@@bench-result ';

if (args.child) {
  await runChild(args.child, JSON.parse(args.spec ?? '{}'));
  process.exit(0);
}

// ---------------------------------------------------------------- parent
const dataDir = path.resolve(args.data ?? process.env.HARMOQ_DATA ?? path.join(REPO, '../shared/data'));
const weights = path.join(dataDir, 'weights/house/swinir_light_x2_house.pth');
const allCores = Number(args.threads ?? (os.availableParallelism?.() ?? os.cpus().length));
const quick = Boolean(args.quick);
const outFile = path.resolve(args.out ?? path.join(REPO, 'results/bench/eval.json'));
if (!fs.existsSync(weights)) fail(`house weights not found at ${weights} (set HARMOQ_DATA or --data)`);

function fail(message) {
  console.error(`bench-eval: ${message}`);
  process.exit(1);
}

function child(kind, spec = {}) {
  const started = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, '--child', kind, '--spec', JSON.stringify({ ...spec, dataDir, weights })], {
    cwd: REPO, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
  });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith(CHILD_MARK));
  if (r.status !== 0 || !line) fail(`${kind} ${JSON.stringify(spec)} failed: ${(r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ')}`);
  const result = JSON.parse(line.slice(CHILD_MARK.length));
  process.stdout.write(`  ${kind} ${JSON.stringify(spec.label ?? spec.threads ?? '')}: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return result;
}

// The first interpreter that imports torch: $HARMOQ_PYTHON, then python3 on PATH (often a pyenv or venv shim
// without torch), then Debian's /usr/bin/python3 (where apt's python3-torch lives).
function pythonWithTorch() {
  const candidates = [...new Set([process.env.HARMOQ_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean))];
  for (const python of candidates) {
    const r = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
    if (r.status === 0) return python;
  }
  return null;
}

function pytorchAvailable() {
  if (!args['pytorch-swinir']) return { ok: false, why: 'no --pytorch-swinir <path to a clone of JingyunLiang/SwinIR> given' };
  const repo = path.resolve(args['pytorch-swinir']);
  if (!fs.existsSync(path.join(repo, 'models/network_swinir.py'))) return { ok: false, why: `${repo}/models/network_swinir.py not found` };
  const python = pythonWithTorch();
  if (!python) return { ok: false, why: "no python3 imports torch (tried $HARMOQ_PYTHON, python3, /usr/bin/python3)" };
  return { ok: true, repo, python };
}

/** Best wall and CPU milliseconds (all threads) over `reps` runs of `fn`. */
async function bestOf(reps, fn) {
  let best = Infinity, bestCpu = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now(), c = process.cpuUsage();
    await fn();
    const used = process.cpuUsage(c);
    best = Math.min(best, performance.now() - t);
    bestCpu = Math.min(bestCpu, (used.user + used.system) / 1000);
  }
  return { best, bestCpu };
}

// The official model and protocol in PyTorch eager (float32, no_grad, whole images), same thread count.
const PYTORCH_BENCH = String.raw`
import json, sys, time, glob, os
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
try:
    import timm
    timm_version = timm.__version__
except ImportError:
    # network_swinir.py imports DropPath, to_2tuple and trunc_normal_ from timm, for training and init only:
    # at eval DropPath is the identity and every initialized tensor is overwritten by load_state_dict.
    import types, collections.abc
    layers = types.ModuleType('timm.models.layers')
    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
        def forward(self, x):
            return x
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, collections.abc.Iterable) else (x, x)
    layers.trunc_normal_ = torch.nn.init.trunc_normal_
    for name in ('timm', 'timm.models'):
        sys.modules[name] = types.ModuleType(name)
    sys.modules['timm.models.layers'] = layers
    timm_version = 'absent (eval-time stand-ins for DropPath, to_2tuple, trunc_normal_)'
from models.network_swinir import SwinIR
threads, weights, lr_dir, reps = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
# LR images as raw RGB bytes named <name>_<h>x<w>.rgb (decoded by the parent, so no image library is needed).
torch.set_num_threads(threads)
model = SwinIR(upscale=2, in_chans=3, img_size=64, window_size=8, img_range=1., depths=[6, 6, 6, 6], embed_dim=60,
               num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler='pixelshuffledirect', resi_connection='1conv')
sd = torch.load(weights, map_location='cpu')
model.load_state_dict(sd['params'] if 'params' in sd else sd, strict=True)
model.eval()
out = {}
for f in sorted(glob.glob(os.path.join(lr_dir, '*.rgb'))):
    name, hw = os.path.basename(f)[:-4].rsplit('_', 1)
    hh, ww = map(int, hw.split('x'))
    img = np.fromfile(f, dtype=np.uint8).reshape(hh, ww, 3).astype(np.float32) / 255.
    x = torch.from_numpy(np.transpose(img, (2, 0, 1))).float().unsqueeze(0)
    h, w = x.shape[2:]
    x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :(h // 8 + 1) * 8, :]
    x = torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :(w // 8 + 1) * 8]
    best = float('inf')
    with torch.no_grad():
        model(x)
        for _ in range(reps):
            t = time.perf_counter(); y = model(x)[..., :h * 2, :w * 2].clamp_(0, 1); best = min(best, time.perf_counter() - t)
    out[name] = best
# The BLAS behind nn.Linear (Debian's python3-torch uses whatever libblas.so.3 the alternatives point at).
blas = sorted({l.split()[-1] for l in open('/proc/self/maps') if 'blas' in l.lower() and '/' in l}) if os.path.exists('/proc/self/maps') else []
print(json.dumps({'torch': torch.__version__, 'timm': timm_version, 'threads': torch.get_num_threads(), 'blas_libraries': blas,
                  'mkl': torch.backends.mkl.is_available(), 'mkldnn': torch.backends.mkldnn.is_available(), 'images': out}))
`;

const report = { benchmark: 'SwinIR-light x2 (house weights), Set5, official test protocol, whole images', machine: machine(REPO) };
console.log(`bench-eval on ${report.machine.cpu_model}, ${report.machine.cores} cores${quick ? ' (quick)' : ''}`);
if (os.loadavg()[0] > 0.5) {
  console.log(`warning: load average ${os.loadavg()[0].toFixed(2)} before starting; other jobs will skew the timings (recorded in machine.load_average_at_start/_end)`);
}
const reps = quick ? 1 : 3;
const threadCounts = [...new Set([1, allCores])];

report.matmul_peak = Object.fromEntries(threadCounts.map((t) => [t, child('peak', { threads: t, size: quick ? 1024 : 2048 })]));
report.onnxruntime = Object.fromEntries(threadCounts.map((t) => [t, child('onnx', { threads: t, reps })]));
for (const [t, r] of Object.entries(report.onnxruntime)) r.percent_of_matmul_peak = Number((100 * r.gflops / report.matmul_peak[t].gflops).toFixed(1));
report.onnxruntime_profile = child('profile', { threads: allCores, image: 'bird' });
report.alternatives = {
  note: `bird (144x144 LR -> 152x152 padded), ${allCores} threads, best of ${quick ? 2 : 5}; ms and ratio to the default`,
  variants: {},
};
const VARIANTS = {
  default: {},
  'attention fused (com.microsoft MultiHeadAttention)': { graph: { attention: 'fused' } },
  'Gelu op (opset 20) instead of erf': { graph: { gelu: 'gelu' } },
  'roll + partition per block (reshape) instead of Gather': { graph: { windowOrder: 'reshape' } },
  'bias+mask combined per shifted block': { graph: { biasMask: 'combined' } },
  'bias and mask added separately': { graph: { biasMask: 'separate' } },
  'no q-scale folding': { graph: { foldQScale: false } },
  'batch fixed at 1 (static shapes everywhere)': { graph: { batch: 1 } },
  'attention fused, batch fixed at 1 (no Expand of bias+mask)': { graph: { attention: 'fused', batch: 1 } },
  'graph optimization basic': { session: { graphOptimizationLevel: 'basic' } },
  'graph optimization extended': { session: { graphOptimizationLevel: 'extended' } },
  'CPU memory arena off': { session: { enableCpuMemArena: false } },
  'memory pattern off': { session: { enableMemPattern: false } },
  'denormals not flushed': { session: { extra: { session: { set_denormal_as_zero: '0' } } } },
  'thread spinning off': { session: { extra: { session: { set_denormal_as_zero: '1', disable_quant_qdq: '1', 'intra_op.allow_spinning': '0' } } } },
  'parallel executor (inter-op 2)': { session: { executionMode: 'parallel', interOpNumThreads: 2 } },
};
for (const [label, v] of Object.entries(VARIANTS)) {
  report.alternatives.variants[label] = child('variant', { label, threads: allCores, reps: quick ? 2 : 5, ...v });
}
const base = report.alternatives.variants.default.ms;
const baseCpu = report.alternatives.variants.default.cpu_ms;
for (const v of Object.values(report.alternatives.variants)) {
  v.ratio_to_default = Number((v.ms / base).toFixed(3));
  v.cpu_ratio_to_default = Number((v.cpu_ms / baseCpu).toFixed(3));
}
if (args.quant) {
  const qparams = path.resolve(args.quant);
  const fp = report.onnxruntime[allCores];
  report.fake_quant = { qparams, ...child('onnx', { threads: allCores, reps, quant: qparams }) };
  report.fake_quant.ratio_to_float = Number((report.fake_quant.warm_pass_s / fp.warm_pass_s).toFixed(2));
}

report.tfjs_wasm = child('tfjs', { backend: 'wasm' });
report.tfjs_cpu = child('tfjs-cpu', { crop: 32 });

const torchCheck = pytorchAvailable();
if (torchCheck.ok) {
  report.pytorch_eager = {};
  const lrDir = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-bench-lr-'));
  child('dump-lr', { dir: lrDir });
  for (const t of threadCounts) {
    const r = spawnSync(torchCheck.python, ['-c', PYTORCH_BENCH, torchCheck.repo, String(t), weights, lrDir, String(reps)], { encoding: 'utf8' });
    if (r.status !== 0) fail(`PyTorch benchmark failed: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    const py = JSON.parse(r.stdout.trim().split('\n').pop());
    const seconds = Object.values(py.images).reduce((a, b) => a + b, 0);
    report.pytorch_eager[t] = {
      python: torchCheck.python, torch: py.torch, timm: py.timm, threads: py.threads, blas_libraries: py.blas_libraries,
      mkl: py.mkl, mkldnn: py.mkldnn, pass_s: seconds, images_s: py.images,
    };
    report.onnxruntime[t].speedup_vs_pytorch = Number((seconds / report.onnxruntime[t].warm_pass_s).toFixed(2));
  }
  fs.rmSync(lrDir, { recursive: true });
} else {
  report.pytorch_eager = { skipped: torchCheck.why };
  console.log(`PyTorch eager skipped: ${torchCheck.why}. To include it: git clone https://github.com/JingyunLiang/SwinIR ` +
    `and install PyTorch (Debian: apt-get install python3-torch), then npm run bench:eval -- --pytorch-swinir <clone>.`);
}

report.targets = {
  'onnxruntime all cores >= 3x PyTorch eager (same threads)': report.pytorch_eager[allCores]
    ? report.onnxruntime[allCores].speedup_vs_pytorch >= 3 : 'not measured',
  'onnxruntime all cores >= 40% of measured MatMul peak': report.onnxruntime[allCores].percent_of_matmul_peak >= 40,
};

report.machine.load_average_at_end = os.loadavg().map((v) => Number(v.toFixed(2)));
writeJsonAtomic(outFile, report);

console.log('\nSet5 x2 pass (warm, s) and achieved GFLOP/s:');
for (const [t, r] of Object.entries(report.onnxruntime)) {
  console.log(`  onnxruntime ${t} thread(s): ${r.warm_pass_s.toFixed(2)} s, ${r.gflops.toFixed(1)} GFLOP/s = ${r.percent_of_matmul_peak}% of MatMul peak ${report.matmul_peak[t].gflops.toFixed(0)}` +
    (r.speedup_vs_pytorch ? `, ${r.speedup_vs_pytorch}x PyTorch eager` : ''));
}
if (report.fake_quant) console.log(`  fake-quantized (${path.basename(report.fake_quant.qparams)}), ${allCores} thread(s): ${report.fake_quant.warm_pass_s.toFixed(2)} s = ${report.fake_quant.ratio_to_float}x float`);
console.log(`  tfjs wasm: ${report.tfjs_wasm.pass_s.toFixed(1)} s; tfjs cpu (extrapolated from a ${report.tfjs_cpu.crop}x${report.tfjs_cpu.crop} crop): ${report.tfjs_cpu.extrapolated_pass_s.toFixed(0)} s`);
if (report.pytorch_eager.skipped === undefined) for (const [t, r] of Object.entries(report.pytorch_eager)) console.log(`  PyTorch eager ${t} thread(s): ${r.pass_s.toFixed(2)} s`);
console.log(`wrote ${path.relative(REPO, outFile)}`);

// ---------------------------------------------------------------- children
async function runChild(kind, spec) {
  const engine = await import(path.join(REPO, 'packages/engine/src/index.ts'));
  const swinir = await import(path.join(REPO, 'packages/swinir/src/index.ts'));
  const data = await import(path.join(REPO, 'packages/data/src/index.ts'));
  const ort = await import('onnxruntime-node');
  const config = swinir.presetConfig('swinir-light', 2);
  const emit = (result) => console.log(CHILD_MARK + JSON.stringify(result));
  const set5 = async () => {
    const entries = data.listBenchmark('Set5', 2, spec.dataDir);
    return Promise.all(entries.map(async (e) => ({ name: e.name, lr: (await data.loadPair(e, 2)).lr })));
  };
  const now = () => performance.now();

  if (kind === 'dump-lr') {
    for (const { name, lr } of await set5()) fs.writeFileSync(path.join(spec.dir, `${name}_${lr.height}x${lr.width}.rgb`), lr.data);
    emit({ dir: spec.dir });
    return;
  }

  if (kind === 'peak') {
    const g = new swinir.GraphBuilder('matmul');
    const n = spec.size;
    const values = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    g.addOutput(g.op('MatMul', [g.addInput('a', 'float32', [n, n]), g.addInitializer('b', values, [n, n])]), 'float32', [n, n], 'y');
    const session = await ort.InferenceSession.create(g.toModel(), engine.defaultSessionOptions(spec.threads));
    const feeds = { a: new ort.Tensor('float32', values, [n, n]) };
    await session.run(feeds);
    let best = Infinity;
    for (let r = 0; r < 20; r++) { const t = now(); await session.run(feeds); best = Math.min(best, now() - t); }
    emit({ threads: spec.threads, shape: `${n}x${n}x${n}`, ms: best, gflops: (2 * n ** 3) / best / 1e6 });
    return;
  }

  const loadRunner = (extra = {}) => engine.loadRunner(spec.weights, { arch: 'swinir-light', scale: 2, ...extra });
  if (kind === 'onnx') {
    const images = await set5();
    let quantOptions = {};
    if (spec.quant) {
      const quant = await import(path.join(REPO, 'packages/quant/src/index.ts'));
      const torchIo = await import(path.join(REPO, 'packages/torch-io/src/index.ts'));
      const { plan, bounds } = quant.qparamsPlan(quant.readQParams(spec.quant), spec.quant);
      quantOptions = quant.quantizedEngineOptions(plan, bounds, torchIo.loadStateDict(spec.weights).stateDict, 'onnx');
    }
    const runner = await loadRunner({ engine: 'onnx', threads: spec.threads, ...quantOptions });
    const cold = now();
    for (const { lr } of images) await engine.superResolve(runner, lr);
    const coldPass = (now() - cold) / 1000;
    const perImage = {};
    let flops = 0;
    for (const { name, lr } of images) {
      const { best, bestCpu } = await bestOf(spec.reps, () => engine.superResolve(runner, lr));
      perImage[name] = { lr: `${lr.width}x${lr.height}`, ms: best, cpu_ms: bestCpu, gflop: engine.swinirFlops(config, lr.height, lr.width) / 1e9 };
      flops += engine.swinirFlops(config, lr.height, lr.width);
    }
    const warm = Object.values(perImage).reduce((a, r) => a + r.ms, 0) / 1000;
    const cpu = Object.values(perImage).reduce((a, r) => a + r.cpu_ms, 0) / 1000;
    emit({ threads: spec.threads, cold_pass_s: coldPass, warm_pass_s: warm, cpu_pass_s: cpu, gflop_per_pass: flops / 1e9, gflops: flops / 1e9 / warm, images: perImage });
    await runner.dispose();
    return;
  }

  if (kind === 'profile') {
    const prefix = path.join(os.tmpdir(), `harmoq-ort-profile-${process.pid}`);
    const images = await set5();
    const { lr } = images.find((i) => i.name === spec.image);
    const runner = await loadRunner({ engine: 'onnx', threads: spec.threads, sessionOptions: { enableProfiling: true, profileFilePrefix: prefix } });
    await engine.superResolve(runner, lr);
    await engine.superResolve(runner, lr);
    await runner.endProfiling();
    await runner.dispose();
    const files = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(path.basename(prefix)) && f.endsWith('.json'));
    const byOp = new Map();
    let runs = 0;
    for (const f of files) {
      for (const ev of JSON.parse(fs.readFileSync(path.join(os.tmpdir(), f), 'utf8'))) {
        if (ev.cat === 'Session' && ev.name === 'model_run') runs++;
        if (ev.cat !== 'Node' || !ev.name.endsWith('_kernel_time')) continue;
        const op = ev.args?.op_name ?? '?';
        const cur = byOp.get(op) ?? { ms: 0, count: 0 };
        cur.ms += ev.dur / 1000;
        cur.count++;
        byOp.set(op, cur);
      }
      fs.rmSync(path.join(os.tmpdir(), f));
    }
    const total = [...byOp.values()].reduce((a, v) => a + v.ms, 0);
    const top = [...byOp.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12)
      .map(([op, v]) => ({ op, ms_per_run: v.ms / runs, percent: Number((100 * v.ms / total).toFixed(1)), nodes: v.count / runs }));
    emit({ image: spec.image, lr: `${lr.width}x${lr.height}`, threads: spec.threads, runs, kernel_ms_per_run: total / runs, top_ops: top });
    return;
  }

  if (kind === 'variant') {
    const images = await set5();
    const { lr } = images.find((i) => i.name === 'bird');
    const runner = await loadRunner({ engine: 'onnx', threads: spec.threads, graph: spec.graph, sessionOptions: spec.session });
    const t0 = now();
    await engine.superResolve(runner, lr);
    const first = now() - t0;
    const { best, bestCpu } = await bestOf(spec.reps, () => engine.superResolve(runner, lr));
    // CPU time (all threads, spinning included) is less sensitive than wall time to other jobs on the machine.
    emit({ ms: best, cpu_ms: bestCpu, first_call_ms: first, threads: spec.threads });
    await runner.dispose();
    return;
  }

  if (kind === 'tfjs') {
    const images = await set5();
    const runner = await loadRunner({ engine: 'tfjs', backend: spec.backend });
    await engine.superResolve(runner, { width: 16, height: 16, channels: 3, data: new Uint8Array(16 * 16 * 3) });
    const perImage = {};
    let flops = 0;
    for (const { name, lr } of images) {
      const t = now();
      await engine.superResolve(runner, lr);
      perImage[name] = { lr: `${lr.width}x${lr.height}`, ms: now() - t };
      flops += engine.swinirFlops(config, lr.height, lr.width);
    }
    const pass = Object.values(perImage).reduce((a, r) => a + r.ms, 0) / 1000;
    emit({ backend: runner.description, threads: 1, pass_s: pass, gflops: flops / 1e9 / pass, images: perImage });
    await runner.dispose();
    return;
  }

  if (kind === 'tfjs-cpu') {
    // The cpu backend is ~50x slower than wasm: time one crop of bird and scale by FLOPs to a Set5 pass.
    const images = await set5();
    const { lr } = images.find((i) => i.name === 'bird');
    const c = spec.crop;
    const crop = { width: c, height: c, channels: 3, data: new Uint8Array(c * c * 3) };
    for (let y = 0; y < c; y++) crop.data.set(lr.data.subarray(y * lr.width * 3, y * lr.width * 3 + c * 3), y * c * 3);
    const runner = await loadRunner({ engine: 'tfjs', backend: 'cpu' });
    await engine.superResolve(runner, { width: 8, height: 8, channels: 3, data: new Uint8Array(8 * 8 * 3) });
    const t = now();
    await engine.superResolve(runner, crop);
    const ms = now() - t;
    const cropFlops = engine.swinirFlops(config, c, c);
    const passFlops = images.reduce((a, { lr: im }) => a + engine.swinirFlops(config, im.height, im.width), 0);
    emit({ backend: runner.description, crop: c, crop_ms: ms, gflops: cropFlops / 1e9 / (ms / 1000), extrapolated_pass_s: (ms / 1000) * (passFlops / cropFlops), note: 'extrapolated from one crop by FLOPs' });
    await runner.dispose();
    return;
  }
  throw new Error(`unknown child kind ${kind}`);
}
