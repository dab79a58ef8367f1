import { LIMITS, validateKey, validateMetricPoint, validateParamValue, validateTagValue } from './limits';
import { TrackingError } from './errors';
import type { KeyValue, LogBatch, MetricPoint } from './types';

/** A metric as MLflow's JSON carries it: non-finite values as the proto3 JSON strings. */
export function metricToJson(m: MetricPoint): { key: string; value: number | string; timestamp: number; step: number } {
  const value = Number.isNaN(m.value) ? 'NaN' : m.value === Infinity ? 'Infinity' : m.value === -Infinity ? '-Infinity' : m.value;
  return { key: m.key, value, timestamp: m.timestamp, step: m.step };
}

/** Checks every entity of a batch against the server's rules, so a bad key fails here with its name. */
export function validateBatch(batch: LogBatch): void {
  const seen = new Set<string>();
  for (const p of batch.params ?? []) {
    validateKey('param', p.key);
    validateParamValue(p.key, p.value);
    if (seen.has(p.key)) {
      throw new TrackingError(`param '${p.key}' appears twice in one batch`, { errorCode: 'INVALID_PARAMETER_VALUE', value: p.key });
    }
    seen.add(p.key);
  }
  for (const t of batch.tags ?? []) {
    validateKey('tag', t.key);
    validateTagValue(t.key, t.value);
  }
  for (const m of batch.metrics ?? []) {
    validateKey('metric', m.key);
    validateMetricPoint(m.key, m.value, m.timestamp, m.step);
  }
}

export interface BatchChunk { metrics: MetricPoint[]; params: KeyValue[]; tags: KeyValue[] }

/**
 * Packs a batch into as few log-batch requests as the server accepts: at most 100 params, 100 tags and
 * 1000 metrics, 1000 entities in all, and a JSON body of at most 1,000,000 bytes for `{run_id, ...}`.
 * Greedy in the order params, tags, metrics, so chunks come out the same for the same input.
 */
export function splitBatch(runId: string, batch: LogBatch, bodyLimit: number = LIMITS.batchBodyBytes): BatchChunk[] {
  const chunks: BatchChunk[] = [];
  // '{"run_id":"<id>","metrics":[],"params":[],"tags":[]}' plus a comma per entity after the first.
  const envelope = Buffer.byteLength(JSON.stringify({ run_id: runId, metrics: [], params: [], tags: [] }));
  let current: BatchChunk = { metrics: [], params: [], tags: [] };
  let bytes = envelope;
  const entities = () => current.metrics.length + current.params.length + current.tags.length;
  const flush = () => {
    if (entities() > 0) chunks.push(current);
    current = { metrics: [], params: [], tags: [] };
    bytes = envelope;
  };
  const add = <K extends keyof BatchChunk>(kind: K, item: BatchChunk[K][number], json: unknown, cap: number) => {
    const size = Buffer.byteLength(JSON.stringify(json)) + 1;
    if (envelope + size > bodyLimit) {
      throw new TrackingError(`one ${kind.slice(0, -1)} entry is ${size} bytes of JSON, over the ${bodyLimit}-byte request limit`);
    }
    if (current[kind].length >= cap || entities() >= LIMITS.entitiesPerBatch || bytes + size > bodyLimit) flush();
    (current[kind] as BatchChunk[K][number][]).push(item);
    bytes += size;
  };
  for (const p of batch.params ?? []) add('params', p, p, LIMITS.paramsPerBatch);
  for (const t of batch.tags ?? []) add('tags', t, t, LIMITS.tagsPerBatch);
  for (const m of batch.metrics ?? []) add('metrics', m, metricToJson(m), LIMITS.metricsPerBatch);
  flush();
  return chunks;
}
