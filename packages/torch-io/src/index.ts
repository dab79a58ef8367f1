export * from './tensor';
export { CheckpointError } from './errors';
export { writeFileAtomic } from './atomic';
export { readPth, looksLikeZip } from './pth';
export type { CheckpointKey, PthCheckpoint } from './pth';
export { ALLOWED_GLOBALS_DESCRIPTION, STORAGE_DTYPES } from './pickle';
export {
  SAFETENSORS_DTYPES, encodeSafetensors, readSafetensors, readSafetensorsFile, writeSafetensors,
} from './safetensors';
export type { SafetensorsFile } from './safetensors';
export { NPY_DESCRS, encodeNpy, readNpy, readNpyFile, writeNpy } from './npy';
export {
  SUPPORTED_FORMATS, convertCheckpoint, detectFormat, loadStateDict, sha256Bytes, sha256File,
} from './load';
export type { CheckpointFormat, ConvertResult, LoadedCheckpoint } from './load';
