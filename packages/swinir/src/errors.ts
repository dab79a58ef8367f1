/** A checkpoint whose keys or shapes do not fit the requested (or inferred) SwinIR architecture. */
export class ArchitectureError extends Error {
  override name = 'ArchitectureError';
  constructor(message: string, readonly source?: string) {
    super(source ? `${source}: ${message}` : message);
  }
}

/** Misuse of the model at run time: bad input shape, unknown backend, unsupported option. */
export class SwinIRError extends Error {
  override name = 'SwinIRError';
}
