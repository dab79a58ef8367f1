import { TrackingError } from './errors';

/**
 * The server-side validation limits of MLflow's log-batch and naming rules (shared/docs/mlflow.md, section 2),
 * checked here before a request is sent so a bad key fails with its name instead of a 400 from the server,
 * and the same rules are what the local store and the test server enforce.
 */
export const LIMITS = {
  metricsPerBatch: 1000,
  paramsPerBatch: 100,
  tagsPerBatch: 100,
  entitiesPerBatch: 1000,
  batchBodyBytes: 1_000_000,
  keyLength: 250,
  paramValueLength: 6000,
  tagValueLength: 8000,
  experimentNameLength: 500,
  searchMaxResults: 50000,
} as const;

// Python's \w is Unicode-aware; ':' is accepted by current servers (not on Windows ones).
const KEY_CHARS = /^[\p{L}\p{N}_\/.\- :]*$/u;
export const RUN_ID_PATTERN = /^[a-zA-Z0-9][\w-]{0,255}$/;
export const EXPERIMENT_ID_PATTERN = /^[a-zA-Z0-9][\w-]{0,63}$/;

export type EntityKind = 'metric' | 'param' | 'tag';

/** posixpath.normpath, enough to tell whether a key would name another file than itself. */
function normalizePosix(name: string): string {
  if (name === '') return '.';
  const absolute = name.startsWith('/');
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..' && parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
    else if (part === '..' && absolute) continue;
    else parts.push(part);
  }
  const joined = parts.join('/');
  if (absolute) return (name.startsWith('//') && !name.startsWith('///') ? '//' : '/') + joined;
  return joined === '' ? '.' : joined;
}

/** A metric, param or tag key must be a safe relative file path: the file store writes it as one. */
export function validateKey(kind: EntityKind, key: string): void {
  if (typeof key !== 'string' || !KEY_CHARS.test(key)) {
    throw new TrackingError(
      `invalid ${kind} name '${key}': names may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'`,
      { errorCode: 'INVALID_PARAMETER_VALUE', value: String(key) },
    );
  }
  const norm = normalizePosix(key);
  if (norm !== key || norm === '.' || norm.startsWith('..') || norm.startsWith('/')) {
    throw new TrackingError(
      `invalid ${kind} name '${key}': it would resolve to the path '${norm}' (no empty, '.', '..' or leading '/' parts)`,
      { errorCode: 'INVALID_PARAMETER_VALUE', value: key },
    );
  }
  if (key.length > LIMITS.keyLength) {
    throw new TrackingError(`${kind} name '${key.slice(0, 40)}...' has ${key.length} characters (at most ${LIMITS.keyLength})`, {
      errorCode: 'INVALID_PARAMETER_VALUE', value: key,
    });
  }
}

export function validateParamValue(key: string, value: string): void {
  if (value.length > LIMITS.paramValueLength) {
    throw new TrackingError(
      `param '${key}' has a value of ${value.length} characters (at most ${LIMITS.paramValueLength})`,
      { errorCode: 'INVALID_PARAMETER_VALUE', value: key },
    );
  }
}

export function validateTagValue(key: string, value: string): void {
  if (value.length > LIMITS.tagValueLength) {
    throw new TrackingError(
      `tag '${key}' has a value of ${value.length} characters (at most ${LIMITS.tagValueLength})`,
      { errorCode: 'INVALID_PARAMETER_VALUE', value: key },
    );
  }
}

export function validateMetricPoint(key: string, value: number, timestamp: number, step: number): void {
  if (typeof value !== 'number') {
    throw new TrackingError(`metric '${key}' has the non-numeric value ${String(value)}`, {
      errorCode: 'INVALID_PARAMETER_VALUE', value: key,
    });
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new TrackingError(`metric '${key}' has the timestamp ${timestamp} (must be a non-negative integer, ms)`, {
      errorCode: 'INVALID_PARAMETER_VALUE', value: key,
    });
  }
  if (!Number.isSafeInteger(step)) {
    throw new TrackingError(`metric '${key}' has the step ${step} (must be an integer)`, {
      errorCode: 'INVALID_PARAMETER_VALUE', value: key,
    });
  }
}

export function validateExperimentName(name: string): void {
  if (typeof name !== 'string' || name === '' || name.length > LIMITS.experimentNameLength) {
    throw new TrackingError(
      `invalid experiment name '${String(name).slice(0, 60)}': must be 1 to ${LIMITS.experimentNameLength} characters`,
      { errorCode: 'INVALID_PARAMETER_VALUE', value: String(name) },
    );
  }
}

export function validateRunId(runId: string): void {
  if (!RUN_ID_PATTERN.test(runId)) {
    throw new TrackingError(`invalid run id '${runId}'`, { errorCode: 'INVALID_PARAMETER_VALUE', value: runId });
  }
}
