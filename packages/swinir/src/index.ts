export * from './config';
export * from './errors';
export * from './architecture';
export * from './backend';
export * from './model';
export * from './tiled';
export * from './load';
export * from './onnx';
