/** A bad command line: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * Errors that mean "your input is wrong" rather than "the run failed": every package's domain error.
 * Matched by name so the CLI needs no import of each class.
 */
const BAD_INPUT = new Set(['UsageError', 'CheckpointError', 'ArchitectureError', 'DataError', 'ConfigError']);

export function exitCodeFor(err: unknown): number {
  return err instanceof Error && BAD_INPUT.has(err.name) ? 2 : 1;
}

/** Parses an integer option against its allowed values, naming both on failure. */
export function choiceInt(flag: string, raw: string, choices: readonly number[]): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || !choices.includes(value)) {
    throw new UsageError(`${flag} '${raw}' is not valid (choices: ${choices.join(', ')})`);
  }
  return value;
}

export function choice<T extends string>(flag: string, raw: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw)) {
    throw new UsageError(`${flag} '${raw}' is not valid (choices: ${choices.join(', ')})`);
  }
  return raw as T;
}

export function positiveInt(flag: string, raw: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new UsageError(`${flag} '${raw}' must be a positive integer`);
  return value;
}
