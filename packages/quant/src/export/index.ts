export * from './export';
export { packBits, unpackBits, unpackNodes } from './pack';
export { compactConstants } from './compact';
