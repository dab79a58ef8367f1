import { TrackingError } from './errors';

/**
 * A resolved config as MLflow params: nested objects become dotted keys (`model.depth`), leaves become text
 * (strings as they are, dates as ISO text, numbers, booleans and null as JSON), arrays become JSON so a list of
 * scales stays one param. Keys are sorted so the same config always gives the same params.
 */
export function flattenParams(config: Record<string, unknown>, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (value: unknown, key: string) => {
    if (value === undefined) return;
    if (value instanceof Date) {
      out[key] = value.toISOString();
      return;
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length === 0 && key !== '') out[key] = '{}';
      for (const [k, v] of entries) visit(v, key ? `${key}.${k}` : k);
      return;
    }
    if (typeof value === 'function' || typeof value === 'symbol') {
      throw new TrackingError(`config value at '${key}' is a ${typeof value}, which is not a param`, { value: key });
    }
    if (typeof value === 'number' && !Number.isFinite(value)) out[key] = String(value);
    else if (typeof value === 'bigint') out[key] = value.toString();
    else out[key] = typeof value === 'string' ? value : JSON.stringify(value);
  };
  visit(config, prefix);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
