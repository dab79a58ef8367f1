/** Bad engine options, input shapes or protocol arguments; the message names the value and the valid choices. */
export class EngineError extends Error {
  override name = 'EngineError';
}
