/**
 * Bad input to the quantization framework: an unknown method, option or site set, unsupported bits, a
 * qparams file that does not fit the model. The name is the one the CLI maps to exit code 2.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The offending value, when there is one. */
  readonly value?: string;
  /** The valid choices, when the value had to be one of a list. */
  readonly choices?: readonly string[];

  constructor(message: string, details: { value?: string; choices?: readonly string[]; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.value = details.value;
    this.choices = details.choices;
  }
}

/** A calibration run that went wrong numerically (NaN or Inf), named by quantizer site and step. */
export class CalibrationError extends Error {
  override readonly name = 'CalibrationError';
  constructor(message: string, readonly site?: string, readonly step?: number) {
    super(message);
  }
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The closest choice to `value`, if it is close enough to be a likely typo. */
export function nearest(value: string, choices: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of choices) {
    const d = editDistance(value.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return bestDistance <= Math.max(2, Math.floor(value.length / 3)) ? best : undefined;
}

/** "unknown X 'v' (did you mean 'c'?; choices: ...)" */
export function unknownChoice(what: string, value: string, choices: readonly string[]): ConfigError {
  const guess = nearest(value, choices);
  return new ConfigError(
    `unknown ${what} '${value}' (${guess ? `did you mean '${guess}'? ` : ''}choices: ${choices.join(', ')})`,
    { value, choices },
  );
}
