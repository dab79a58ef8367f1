import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckpointError } from './errors';
import { describeStart } from './signatures';
import { CheckpointKey, looksLikeLegacyTorch, looksLikeZip, readPth } from './pth';
import { looksLikeSafetensors, readSafetensors, writeSafetensors } from './safetensors';
import { StateDict } from './tensor';

export type CheckpointFormat = 'pth' | 'safetensors';

export const SUPPORTED_FORMATS = 'pth (torch.save zip archive), safetensors';

export interface LoadedCheckpoint {
  stateDict: StateDict;
  format: CheckpointFormat;
  /** Which top-level key of a .pth held the weights; null for a bare state dict or a safetensors file. */
  key: CheckpointKey;
  /** sha256 of the file's bytes, lowercase hex. */
  sha256: string;
  /** safetensors `__metadata__` ({} for .pth). */
  metadata: Record<string, string>;
}

/** Picks the reader from the magic bytes: zip -> pth, plausible safetensors header -> safetensors. */
export function detectFormat(bytes: Uint8Array, source?: string): CheckpointFormat {
  if (looksLikeZip(bytes)) return 'pth';
  if (looksLikeLegacyTorch(bytes)) return 'pth'; // readPth refuses it with the legacy-format message
  if (looksLikeSafetensors(bytes)) return 'safetensors';
  throw new CheckpointError(
    `not a PyTorch checkpoint: ${describeStart(bytes)}, expected a zip archive (PK\\x03\\x04) ` +
      `or a safetensors header (supported formats: ${SUPPORTED_FORMATS})`,
    source,
  );
}

export function sha256Bytes(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** sha256 of a file, lowercase hex (streamed in chunks, so large files are fine). */
export function sha256File(file: string): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      hash.update(chunk.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Loads a .pth or .safetensors state dict, choosing the reader by content, never by extension. */
export function loadStateDict(file: string): LoadedCheckpoint {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new CheckpointError(`cannot read checkpoint: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, file);
  }
  const format = detectFormat(bytes, file);
  const sha256 = sha256Bytes(bytes);
  if (format === 'pth') {
    const { stateDict, key } = readPth(bytes, file);
    return { stateDict, format, key, sha256, metadata: {} };
  }
  const { stateDict, metadata } = readSafetensors(bytes, file);
  return { stateDict, format, key: null, sha256, metadata };
}

export interface ConvertResult {
  source: Omit<LoadedCheckpoint, 'stateDict'>;
  entries: number;
  /** sha256 of the written safetensors file. */
  sha256: string;
}

/**
 * Converts a checkpoint (normally .pth) to safetensors, recording where it came from in `__metadata__`
 * (source file name, format, top-level key and sha256), so a converted file can be traced to its original.
 */
export function convertCheckpoint(inPath: string, outPath: string): ConvertResult {
  const loaded = loadStateDict(inPath);
  const metadata: Record<string, string> = {
    ...loaded.metadata,
    format: 'pt',
    source_file: path.basename(inPath),
    source_format: loaded.format,
    source_key: loaded.key ?? '',
    source_sha256: loaded.sha256,
  };
  writeSafetensors(outPath, loaded.stateDict, metadata);
  const { stateDict, ...source } = loaded;
  return { source, entries: stateDict.size, sha256: sha256File(outPath) };
}
