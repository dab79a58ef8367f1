import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TrackingError } from './errors';

export type TrackingTarget =
  | { kind: 'server'; uri: string }
  | { kind: 'local'; root: string };

export const DEFAULT_LOCAL_DIR = 'mlruns';

/**
 * Where runs go, from MLFLOW_TRACKING_URI as MLflow reads it: `http(s)://...` is a tracking server,
 * `file:` URIs and plain paths are a local ./mlruns-style folder, unset means `./mlruns`. Database and
 * Databricks URIs need MLflow's own Python stores and are refused by name.
 */
export function resolveTrackingUri(raw: string | undefined, cwd: string = process.cwd()): TrackingTarget {
  const value = raw?.trim() ?? '';
  if (value === '') return { kind: 'local', root: path.resolve(cwd, DEFAULT_LOCAL_DIR) };
  if (/^https?:\/\//i.test(value)) return { kind: 'server', uri: value.replace(/\/+$/, '') };
  if (/^file:\/\//i.test(value)) return { kind: 'local', root: fileURLToPath(value) };
  if (/^file:/i.test(value)) return { kind: 'local', root: path.resolve(cwd, value.slice('file:'.length)) };
  // A scheme of two or more letters (one letter is a Windows drive); bare 'databricks' is MLflow's too.
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(value) ?? /^(databricks)$/i.exec(value);
  if (scheme) {
    throw new TrackingError(
      `MLFLOW_TRACKING_URI '${value}' uses the '${scheme[1]}' scheme, which this client cannot write`,
      { value, choices: ['http://...', 'https://...', 'file:...', 'a folder path'] },
    );
  }
  return { kind: 'local', root: path.resolve(cwd, value) };
}
