export { GraphBuilder, attr, type AttrValue, type ElemType, type ModelOptions, type NodeSpec, type OnnxTensorData } from './graph-builder';
export { encodeModel, decodeModel, TensorDataType, AttributeType, type ModelProtoObject } from './proto';
export {
  buildSwinIROnnx, blockWindow, paddedSize, OnnxGraphError,
  type SiteHook, type SiteInfo, type SwinIROnnxOptions,
} from './swinir-onnx';
export { relativePositionIndex, relativePositionBias, shiftedWindowMask } from './windows';
