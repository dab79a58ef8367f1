import { splitBatch, validateBatch, metricToJson } from './batch';
import { LIMITS, validateKey } from './limits';
import { TrackingError } from './errors';
import type { KeyValue, MetricPoint } from './types';

const RUN = '0123456789abcdef0123456789abcdef';
const params = (n: number, valueLength = 1): KeyValue[] =>
  Array.from({ length: n }, (_, i) => ({ key: `p${i}`, value: 'v'.repeat(valueLength) }));
const tags = (n: number, valueLength = 1): KeyValue[] =>
  Array.from({ length: n }, (_, i) => ({ key: `t${i}`, value: 'w'.repeat(valueLength) }));
const metrics = (n: number): MetricPoint[] =>
  Array.from({ length: n }, (_, i) => ({ key: 'loss', value: 1 / (i + 1), timestamp: 1_700_000_000_000 + i, step: i }));

/** The exact body the client sends for a chunk. */
function bodyBytes(chunk: ReturnType<typeof splitBatch>[number]): number {
  const body: Record<string, unknown> = { run_id: RUN };
  if (chunk.metrics.length) body.metrics = chunk.metrics.map(metricToJson);
  if (chunk.params.length) body.params = chunk.params;
  if (chunk.tags.length) body.tags = chunk.tags;
  return Buffer.byteLength(JSON.stringify(body));
}

function counts(chunks: ReturnType<typeof splitBatch>) {
  return chunks.map((c) => [c.params.length, c.tags.length, c.metrics.length]);
}

describe('splitBatch keeps every log-batch request inside the server limits', () => {
  test('exactly at the count limits: one request', () => {
    expect(counts(splitBatch(RUN, { params: params(100) }))).toEqual([[100, 0, 0]]);
    expect(counts(splitBatch(RUN, { metrics: metrics(1000) }))).toEqual([[0, 0, 1000]]);
    expect(counts(splitBatch(RUN, { params: params(100), tags: tags(100), metrics: metrics(800) }))).toEqual([[100, 100, 800]]);
  });

  test('one over a count limit: a second request', () => {
    expect(counts(splitBatch(RUN, { params: params(101) }))).toEqual([[100, 0, 0], [1, 0, 0]]);
    expect(counts(splitBatch(RUN, { tags: tags(201) }))).toEqual([[0, 100, 0], [0, 100, 0], [0, 1, 0]]);
    expect(counts(splitBatch(RUN, { metrics: metrics(2001) }))).toEqual([[0, 0, 1000], [0, 0, 1000], [0, 0, 1]]);
    // 1000 entities in all: 100 + 100 + 800 fill the first request.
    expect(counts(splitBatch(RUN, { params: params(100), tags: tags(100), metrics: metrics(801) }))).toEqual([
      [100, 100, 800], [0, 0, 1],
    ]);
  });

  test('splits on the 1,000,000-byte body limit and never passes it', () => {
    // 100 params of 6000 characters and 100 tags of 8000: 1.4 MB of values, within the count limits.
    const batch = { params: params(100, LIMITS.paramValueLength), tags: tags(100, LIMITS.tagValueLength), metrics: metrics(500) };
    const chunks = splitBatch(RUN, batch);
    expect(chunks.length).toBe(2);
    for (const c of chunks) expect(bodyBytes(c)).toBeLessThanOrEqual(LIMITS.batchBodyBytes);
    // Nothing lost, nothing repeated, order kept.
    expect(chunks.flatMap((c) => c.params)).toEqual(batch.params);
    expect(chunks.flatMap((c) => c.tags)).toEqual(batch.tags);
    expect(chunks.flatMap((c) => c.metrics)).toEqual(batch.metrics);
    // The first request is full: one more tag would not have fitted.
    const first = chunks[0];
    const next = [...batch.params, ...batch.tags][first.params.length + first.tags.length];
    expect(bodyBytes(first) + Buffer.byteLength(JSON.stringify(next)) + 1).toBeGreaterThan(LIMITS.batchBodyBytes);
  });

  test('a smaller body limit splits sooner, each chunk under it', () => {
    const chunks = splitBatch(RUN, { metrics: metrics(1000) }, 20_000);
    expect(chunks.length).toBeGreaterThan(3);
    for (const c of chunks) expect(bodyBytes(c)).toBeLessThanOrEqual(20_000);
    expect(chunks.flatMap((c) => c.metrics)).toHaveLength(1000);
  });

  test('an empty batch sends nothing', () => {
    expect(splitBatch(RUN, {})).toEqual([]);
  });
});

describe('key and value rules', () => {
  test.each(['psnr', 'Set5/psnr_y', 'train/loss step', 'a.b-c_d', 'x:y', 'Zürich'])('accepts %p', (key) => {
    expect(() => validateKey('metric', key)).not.toThrow();
  });
  const refused = ['', '/abs', 'a/', 'a//b', './a', 'a/./b', '../a', 'a/..', '.', 'bad!', 'semi;colon', 'k'.repeat(251)];
  test.each(refused.map((k) => [k.length > 40 ? `${k.length} characters` : JSON.stringify(k), k]))('refuses %s', (_label, key) => {
    expect(() => validateKey('param', key)).toThrow(TrackingError);
  });
  test('errors name the key and carry INVALID_PARAMETER_VALUE', () => {
    const err = (() => { try { validateKey('tag', 'bad!'); } catch (e) { return e as TrackingError; } })()!;
    expect(err.message).toContain("'bad!'");
    expect(err.errorCode).toBe('INVALID_PARAMETER_VALUE');
    expect(err.value).toBe('bad!');
  });
  test('value lengths, duplicate params, metric fields', () => {
    expect(() => validateBatch({ params: params(1, 6000) })).not.toThrow();
    expect(() => validateBatch({ params: params(1, 6001) })).toThrow(/6001 characters/);
    expect(() => validateBatch({ tags: tags(1, 8000) })).not.toThrow();
    expect(() => validateBatch({ tags: tags(1, 8001) })).toThrow(/8001 characters/);
    expect(() => validateBatch({ params: [{ key: 'a', value: '1' }, { key: 'a', value: '1' }] })).toThrow(/twice/);
    expect(() => validateBatch({ metrics: [{ key: 'm', value: 1, timestamp: -1, step: 0 }] })).toThrow(/timestamp/);
    expect(() => validateBatch({ metrics: [{ key: 'm', value: 1, timestamp: 0, step: 0.5 }] })).toThrow(/step/);
    expect(() => validateBatch({ metrics: [{ key: 'm', value: true as unknown as number, timestamp: 0, step: 0 }] })).toThrow(/non-numeric/);
    expect(() => validateBatch({ metrics: [{ key: 'm', value: NaN, timestamp: 0, step: 0 }] })).not.toThrow();
  });
});
