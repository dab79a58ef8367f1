/**
 * The experiments domain error. `badInput` marks what the user got wrong (an unknown experiment, a bad
 * `--only`/`--set`, a missing checkpoint) as opposed to a cell that failed while running.
 */
export class ExperimentError extends Error {
  override readonly name = 'ExperimentError';
  readonly value?: string;
  readonly choices?: readonly string[];
  readonly badInput: boolean;

  constructor(message: string, details: { value?: string; choices?: readonly string[]; badInput?: boolean; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.value = details.value;
    this.choices = details.choices;
    this.badInput = details.badInput ?? true;
  }
}
