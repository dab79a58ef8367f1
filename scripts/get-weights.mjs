#!/usr/bin/env zx
// Downloads the official SwinIR release checkpoints into <data>/weights/official/.
//
//   npx zx scripts/get-weights.mjs [--data DIR]      (DIR: --data, else HARMOQ_DATA, else ./data)
//
// Every file is streamed to a temp file next to its destination and renamed only after its size and
// sha256 pass. weights.lock.json (committed) pins the sha256 of each file: the first download of a file
// records it, later downloads and files already present are checked against it. Nothing else downloads.
// Progress goes to stdout; a failure is one line on stderr and exit code 1, leaving no partial file.
// HARMOQ_WEIGHTS_BASE_URL and HARMOQ_WEIGHTS_LOCK override the release URL and the lock file (for tests).
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_BASE_URL = 'https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/';
const FILES = [
  '002_lightSR_DIV2K_s64w8_SwinIR-S_x2.pth',
  '002_lightSR_DIV2K_s64w8_SwinIR-S_x3.pth',
  '002_lightSR_DIV2K_s64w8_SwinIR-S_x4.pth',
  '001_classicalSR_DF2K_s64w8_SwinIR-M_x2.pth',
  '001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth',
];
// A stalled connection should fail in reasonable time rather than hang a setup run.
const RESPONSE_TIMEOUT_MS = 60_000;

class WeightsError extends Error {}

const baseUrl = (process.env.HARMOQ_WEIGHTS_BASE_URL || DEFAULT_BASE_URL).replace(/\/?$/, '/');
const lockPath = path.resolve(process.env.HARMOQ_WEIGHTS_LOCK || path.join(REPO_ROOT, 'weights.lock.json'));
const dataDir = path.resolve(String(argv.data ?? (process.env.HARMOQ_DATA || './data')));
const outDir = path.join(dataDir, 'weights', 'official');

/** Temp files and folders this run created; removed again if it fails or is interrupted. */
const created = { temps: new Set(), dirs: [] };

function cleanUp() {
  for (const temp of created.temps) fs.rmSync(temp, { force: true });
  created.temps.clear();
  for (const dir of created.dirs.reverse()) {
    try {
      fs.rmdirSync(dir); // only succeeds when empty, which is the point
    } catch {}
  }
}

function makeDirs(dir) {
  const missing = [];
  for (let d = dir; !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    fs.mkdirSync(d);
    created.dirs.push(d);
  }
}

function writeFileAtomic(target, text) {
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  created.temps.add(temp);
  const fd = fs.openSync(temp, 'wx');
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, target);
  created.temps.delete(temp);
}

function readLock() {
  if (!fs.existsSync(lockPath)) {
    return { source: DEFAULT_BASE_URL, files: Object.fromEntries(FILES.map((name) => [name, { bytes: null, sha256: null }])) };
  }
  const lock = JSON.parse(fs.readFileSync(lockPath, 'utf8'));
  for (const name of FILES) lock.files[name] ??= { bytes: null, sha256: null };
  return lock;
}

function writeLock(lock) {
  writeFileAtomic(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
}

function sha256OfFile(file) {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

const manualHint = (name) =>
  `set HARMOQ_DATA to a data folder that already has weights/official/${name}, or copy the file there by hand (${path.join(outDir, name)})`;

/** Streams `url` into a temp file beside `dest`, hashing as it goes; returns the temp path, size and sha256. */
async function download(url, dest, name) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no response in ${RESPONSE_TIMEOUT_MS / 1000} s`)), RESPONSE_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url, { signal: controller.signal, redirect: 'follow' });
  } catch (err) {
    const cause = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(err);
    throw new WeightsError(`cannot download ${url} (${cause}); no network? ${manualHint(name)}`);
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok || !response.body) {
    throw new WeightsError(`cannot download ${url} (HTTP ${response.status} ${response.statusText}); ${manualHint(name)}`);
  }
  const expectedBytes = Number(response.headers.get('content-length') ?? NaN);
  const temp = path.join(path.dirname(dest), `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.part`);
  created.temps.add(temp);
  const hash = createHash('sha256');
  let bytes = 0;
  const fd = fs.openSync(temp, 'wx');
  try {
    for await (const chunk of response.body) {
      hash.update(chunk);
      bytes += chunk.length;
      for (let written = 0; written < chunk.length; ) written += fs.writeSync(fd, chunk, written);
    }
    fs.fsyncSync(fd);
  } catch (err) {
    throw new WeightsError(`download of ${url} broke off after ${bytes} bytes (${err?.cause?.code ?? err?.message ?? err}); ${manualHint(name)}`);
  } finally {
    fs.closeSync(fd);
  }
  if (Number.isFinite(expectedBytes) && bytes !== expectedBytes) {
    throw new WeightsError(`download of ${url} is incomplete: got ${bytes} of ${expectedBytes} bytes; run the script again`);
  }
  return { temp, bytes, sha256: hash.digest('hex') };
}

async function fetchOne(name, lock) {
  const dest = path.join(outDir, name);
  const pinned = lock.files[name];
  if (fs.existsSync(dest)) {
    const sha256 = sha256OfFile(dest);
    if (pinned.sha256 && pinned.sha256 !== sha256) {
      throw new WeightsError(`${dest} has sha256 ${sha256}, but ${path.basename(lockPath)} pins ${pinned.sha256}; delete the file to download it again`);
    }
    if (pinned.sha256) return { changed: false, message: `${name}: present, sha256 verified` };
    Object.assign(pinned, { bytes: fs.statSync(dest).size, sha256 });
    return { changed: true, message: `${name}: present (copied by hand?), sha256 recorded from it` };
  }
  const url = new URL(name, baseUrl).href;
  console.log(`get-weights: downloading ${url}`);
  makeDirs(outDir);
  const got = await download(url, dest, name);
  if (pinned.bytes !== null && pinned.bytes !== got.bytes) {
    throw new WeightsError(`${url} gave ${got.bytes} bytes, but ${path.basename(lockPath)} pins ${pinned.bytes}; the release file changed or the download is corrupt`);
  }
  if (pinned.sha256 && pinned.sha256 !== got.sha256) {
    throw new WeightsError(`${url} has sha256 ${got.sha256}, but ${path.basename(lockPath)} pins ${pinned.sha256}; the release file changed or the download is corrupt`);
  }
  fs.renameSync(got.temp, dest);
  created.temps.delete(got.temp);
  const changed = !pinned.sha256;
  Object.assign(pinned, { bytes: got.bytes, sha256: got.sha256 });
  return { changed, message: `${name}: downloaded (${(got.bytes / 1e6).toFixed(1)} MB), sha256 ${changed ? 'recorded' : 'verified'}` };
}

process.on('SIGINT', () => {
  cleanUp();
  process.exit(130);
});

try {
  const lock = readLock();
  for (const name of FILES) {
    const { changed, message } = await fetchOne(name, lock);
    // Write the lock after each newly pinned file, so hashes recorded before a later failure are kept.
    if (changed) writeLock(lock);
    console.log(`get-weights: ${message}`);
  }
  console.log(`get-weights: ${FILES.length} checkpoints in ${outDir}`);
} catch (err) {
  cleanUp();
  console.error(`get-weights: ${err instanceof WeightsError || !argv.verbose ? err?.message ?? err : err.stack}`);
  process.exit(1);
}
