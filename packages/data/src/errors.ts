/** The one error class of the data package: a bad file, folder, name or size, named in the message. */
export class DataError extends Error {
  override readonly name = 'DataError';
  /** The offending value (a path, a dataset name, a scale), when there is one. */
  readonly value?: string;
  /** The valid choices, when the value had to be one of a list. */
  readonly choices?: readonly string[];

  constructor(message: string, details: { value?: string; choices?: readonly string[]; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.value = details.value;
    this.choices = details.choices;
  }
}
