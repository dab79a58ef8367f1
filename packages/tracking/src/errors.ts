/**
 * The one error class of the tracking package. A server refusal carries MLflow's `error_code` and HTTP status;
 * a server that could not be reached (after the bounded retries) has `unreachable` set, which is what sends a
 * run to the local store instead.
 */
export class TrackingError extends Error {
  override readonly name = 'TrackingError';
  /** MLflow's error code (`RESOURCE_DOES_NOT_EXIST`, `INVALID_PARAMETER_VALUE`, ...), when the server sent one. */
  readonly errorCode?: string;
  /** HTTP status of the final response, when there was one. */
  readonly httpStatus?: number;
  /** True when no usable answer came back: connection refused or reset, timeout, or 5xx/429 after every retry. */
  readonly unreachable: boolean;
  /** The offending value (a key, a URI, a run id), when there is one. */
  readonly value?: string;
  /** The valid choices, when the value had to be one of a list. */
  readonly choices?: readonly string[];

  constructor(
    message: string,
    details: {
      errorCode?: string; httpStatus?: number; unreachable?: boolean;
      value?: string; choices?: readonly string[]; cause?: unknown;
    } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.errorCode = details.errorCode;
    this.httpStatus = details.httpStatus;
    this.unreachable = details.unreachable ?? false;
    this.value = details.value;
    this.choices = details.choices;
  }
}

/** Whether an error means "the server is not there" (fall back to the local store) rather than "the request is wrong". */
export function isUnreachable(err: unknown): boolean {
  return err instanceof TrackingError && err.unreachable;
}
