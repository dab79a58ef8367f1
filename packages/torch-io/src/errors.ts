/** Every refusal of a checkpoint, safetensors or .npy file: the message names the bad value and what was expected. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(message: string, readonly file?: string) {
    super(file ? `${message} [${file}]` : message);
  }
}
