#!/usr/bin/env zx
// Fetches the benchmark sets (Set5, Set14, B100: HR and LR_bicubic X2/X3/X4) and the 32 calibration images
// into a data folder, for machines that do not have ../shared/data. Every file comes from a fixed commit of a
// public GitHub repository (sources: docs/data.md) and is checked against scripts/data.sha256 before it is
// renamed into place; the calibration BMPs are converted to PNG and checked by pixel checksum
// (scripts/calibration-pixels.sha256). Files already present with the right checksum are kept, so a rerun
// resumes. On any failure: one line on stderr, exit 1, temp files removed.
//
//   npx zx scripts/setup-data.mjs [--data DIR] [--base-url URL] [--jobs N]
//   npx zx scripts/setup-data.mjs --write-checksums DIR   # regenerate both checksum lists from a data folder
//
// --base-url (or env HARMOQ_DATA_BASE_URL) replaces https://raw.githubusercontent.com, for a mirror laid out as
// <base>/<owner>/<repo>/<commit>/<path>.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { minimist } from 'zx';

const scriptsDir = path.dirname(fileURLToPath(import.meta.url));
const FILE_SUMS = path.join(scriptsDir, 'data.sha256');
const PIXEL_SUMS = path.join(scriptsDir, 'calibration-pixels.sha256');
const DEFAULT_BASE = 'https://raw.githubusercontent.com';

/** Where each data path comes from (MANIFEST.md of the shared data folder, sources S1-S3). */
const SOURCES = [
  { prefix: 'benchmarks/Set5/', repo: 'Nitin-Mane/SwinIR', commit: 'c24fb460d41e0d7e87b9c16854a4acdb01db5a82', to: 'testsets/Set5/' },
  { prefix: 'benchmarks/Set14/', repo: 'ryujaehun/baseline', commit: 'c9e99474f11e14db836b378f00068287b0eccd43', to: 'benchmark/Set14/' },
  { prefix: 'benchmarks/B100/', repo: 'ryujaehun/baseline', commit: 'c9e99474f11e14db836b378f00068287b0eccd43', to: 'benchmark/B100/' },
  // T91 images, stored as BMP upstream: calibration/t1.png <- data/yang91/t1.bmp.
  { prefix: 'calibration/', repo: 'jiny2001/dcscn-super-resolution', commit: 'd382bc30d41c94ac72f8cb148d61cc4864b3b380', to: 'data/yang91/', bmp: true },
];

class SetupError extends Error {}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** The pixel checksum of an image: sha256 of "<width>x<height>\n" followed by its 8-bit RGB samples (HWC). */
const pixelSha256 = ({ width, height, rgb }) => createHash('sha256').update(`${width}x${height}\n`).update(rgb).digest('hex');

/** Reads `<hash>  <path>` lines (sha256sum format); '#' lines are comments. */
function readSums(file) {
  const sums = new Map();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const match = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!match) throw new SetupError(`bad line in ${file}: '${line}'`);
    sums.set(match[2], match[1]);
  }
  return sums;
}

function sourceOf(dataPath, base) {
  const source = SOURCES.find((s) => dataPath.startsWith(s.prefix));
  if (!source) throw new SetupError(`no source known for '${dataPath}'`);
  let rest = dataPath.slice(source.prefix.length);
  if (source.bmp) rest = rest.replace(/\.png$/, '.bmp');
  return { url: `${base}/${source.repo}/${source.commit}/${source.to}${rest}`, bmp: Boolean(source.bmp) };
}

/** Decodes an uncompressed BMP (24- or 32-bit BI_RGB, or 8-bit palette) to 8-bit RGB. */
function decodeBmp(bytes, name) {
  const fail = (why) => new SetupError(`${name}: unsupported BMP (${why})`);
  if (bytes.length < 54 || bytes.toString('latin1', 0, 2) !== 'BM') throw fail('no BM header');
  const pixelOffset = bytes.readUInt32LE(10);
  const headerSize = bytes.readUInt32LE(14);
  if (headerSize < 40) throw fail(`header size ${headerSize}`);
  const width = bytes.readInt32LE(18);
  const rawHeight = bytes.readInt32LE(22);
  const bitsPerPixel = bytes.readUInt16LE(28);
  const compression = bytes.readUInt32LE(30);
  if (compression !== 0) throw fail(`compression ${compression}`);
  if (![8, 24, 32].includes(bitsPerPixel)) throw fail(`${bitsPerPixel} bits per pixel`);
  const height = Math.abs(rawHeight);
  const topDown = rawHeight < 0;
  const stride = Math.ceil((width * bitsPerPixel) / 32) * 4;
  if (width <= 0 || height === 0 || pixelOffset + stride * height > bytes.length) throw fail('truncated');
  const paletteAt = 14 + headerSize;
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = pixelOffset + (topDown ? y : height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      let b, g, r;
      if (bitsPerPixel === 8) {
        const entry = paletteAt + 4 * bytes[row + x];
        [b, g, r] = [bytes[entry], bytes[entry + 1], bytes[entry + 2]];
      } else {
        const at = row + x * (bitsPerPixel / 8);
        [b, g, r] = [bytes[at], bytes[at + 1], bytes[at + 2]];
      }
      rgb[(y * width + x) * 3] = r;
      rgb[(y * width + x) * 3 + 1] = g;
      rgb[(y * width + x) * 3 + 2] = b;
    }
  }
  return { width, height, rgb };
}

async function decodePng(bytes) {
  const { data, info } = await sharp(bytes, { ignoreIcc: true }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new SetupError(`expected 3 channels after decoding, got ${info.channels}`);
  return { width: info.width, height: info.height, rgb: data };
}

/** A network failure (DNS, refused, reset, timeout), as opposed to an HTTP answer. */
class UnreachableError extends SetupError {}

async function download(url, timeoutMs) {
  let response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = err.cause?.code ?? err.cause?.message ?? err.name ?? err.message;
    throw new UnreachableError(`${new URL(url).host} (${cause})`);
  }
  if (!response.ok) throw new SetupError(`${url} answered HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

const temps = new Set();
let tempCounter = 0;

/** Writes bytes to a temp file beside `file` (fsynced); the caller renames it once everything checks out. */
function writeTemp(file, bytes) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${++tempCounter}.tmp`);
  temps.add(temp);
  const fd = fs.openSync(temp, 'wx');
  try {
    fs.writeSync(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return temp;
}

function commit(temp, file) {
  fs.renameSync(temp, file);
  temps.delete(temp);
}

function removeTemps() {
  for (const temp of temps) fs.rmSync(temp, { force: true });
  temps.clear();
}

/** Fetches, checks and places one file. Returns 'kept' when a correct copy was already there. */
async function fetchOne(dataPath, { dataDir, base, fileSums, pixelSums, timeoutMs }) {
  const target = path.join(dataDir, dataPath);
  const { url, bmp } = sourceOf(dataPath, base);
  if (bmp) {
    const expected = pixelSums.get(dataPath);
    if (fs.existsSync(target) && pixelSha256(await decodePng(fs.readFileSync(target))) === expected) return 'kept';
    const pixels = decodeBmp(await download(url, timeoutMs), url);
    const got = pixelSha256(pixels);
    if (got !== expected) throw new SetupError(`pixel checksum mismatch for ${dataPath} from ${url} (got ${got}, expected ${expected})`);
    const png = await sharp(pixels.rgb, { raw: { width: pixels.width, height: pixels.height, channels: 3 } }).png().toBuffer();
    const temp = writeTemp(target, png);
    // Check what was written, not what was meant to be written.
    if (pixelSha256(await decodePng(fs.readFileSync(temp))) !== expected) throw new SetupError(`PNG of ${dataPath} does not read back identically`);
    commit(temp, target);
    return 'fetched';
  }
  const expected = fileSums.get(dataPath);
  if (fs.existsSync(target) && sha256(fs.readFileSync(target)) === expected) return 'kept';
  const bytes = await download(url, timeoutMs);
  const got = sha256(bytes);
  if (got !== expected) throw new SetupError(`checksum mismatch for ${dataPath} from ${url} (got ${got}, expected ${expected})`);
  const temp = writeTemp(target, bytes);
  if (sha256(fs.readFileSync(temp)) !== expected) throw new SetupError(`${temp} does not read back identically`);
  commit(temp, target);
  return 'fetched';
}

async function setup(args) {
  const dataDir = path.resolve(args.data ?? 'data');
  const base = (args['base-url'] ?? process.env.HARMOQ_DATA_BASE_URL ?? DEFAULT_BASE).replace(/\/+$/, '');
  const jobs = Math.max(1, Number(args.jobs ?? 8));
  const timeoutMs = 60_000;
  const fileSums = readSums(FILE_SUMS);
  const pixelSums = readSums(PIXEL_SUMS);
  const paths = [...fileSums.keys(), ...pixelSums.keys()];
  const context = { dataDir, base, fileSums, pixelSums, timeoutMs };

  // Probe with the first file, so an unreachable host costs one short request and writes nothing.
  let first;
  try {
    first = await fetchOne(paths[0], { ...context, timeoutMs: 15_000 });
  } catch (err) {
    if (err instanceof UnreachableError) {
      throw new SetupError(
        `cannot reach the host ${err.message}; set HARMOQ_DATA=../shared/data or copy the sets by hand into ${dataDir} (layout: docs/data.md)`,
      );
    }
    throw err;
  }
  const counts = { fetched: 0, kept: 0 };
  counts[first]++;
  let next = 1;
  const worker = async () => {
    while (next < paths.length) {
      const dataPath = paths[next++];
      const outcome = await fetchOne(dataPath, context);
      counts[outcome]++;
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  process.stdout.write(`setup-data: ${paths.length} files in ${dataDir} (${counts.fetched} fetched, ${counts.kept} already present)\n`);
}

/** Regenerates both checksum lists from a complete, trusted data folder (e.g. ../shared/data). */
async function writeChecksums(sourceDir) {
  const shipped = readSums(path.join(sourceDir, 'SHA256SUMS'));
  const fileLines = [
    '# sha256sum format, paths relative to the data folder; check there with: sha256sum -c <this file>',
    '# Generated by: npx zx scripts/setup-data.mjs --write-checksums ../shared/data',
  ];
  const pixelLines = [
    '# sha256 of "<width>x<height>\\n" + the 8-bit RGB samples (HWC) of each calibration image: the PNGs are',
    '# re-encoded from BMP here, so their bytes differ from the shared copies but their pixels must not.',
    '# Generated by: npx zx scripts/setup-data.mjs --write-checksums ../shared/data',
  ];
  for (const dataPath of [...shipped.keys()].sort()) {
    const bytes = fs.readFileSync(path.join(sourceDir, dataPath));
    if (sha256(bytes) !== shipped.get(dataPath)) throw new SetupError(`${dataPath} in ${sourceDir} does not match its SHA256SUMS`);
    if (dataPath.startsWith('benchmarks/')) fileLines.push(`${shipped.get(dataPath)}  ${dataPath}`);
    else if (dataPath.startsWith('calibration/')) pixelLines.push(`${pixelSha256(await decodePng(bytes))}  ${dataPath}`);
    else throw new SetupError(`no source known for '${dataPath}'`);
  }
  for (const [file, lines] of [[FILE_SUMS, fileLines], [PIXEL_SUMS, pixelLines]]) {
    const temp = writeTemp(file, `${lines.join('\n')}\n`);
    commit(temp, file);
  }
  process.stdout.write(`setup-data: wrote ${fileLines.length - 2} file and ${pixelLines.length - 3} pixel checksums\n`);
}

const args = minimist(process.argv.slice(2), { string: ['data', 'base-url', 'write-checksums', 'jobs'] });
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    removeTemps();
    process.stderr.write(`setup-data: interrupted; temp files removed\n`);
    process.exit(1);
  });
}
try {
  if (args['write-checksums'] !== undefined) await writeChecksums(path.resolve(args['write-checksums']));
  else await setup(args);
} catch (err) {
  removeTemps();
  process.stderr.write(`setup-data: ${err instanceof SetupError ? err.message : err.stack ?? err}\n`);
  process.exit(1);
}
