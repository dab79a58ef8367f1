export { GraphBuilder, attr, type AttrValue, type ElemType, type ModelOptions, type NodeSpec, type OnnxTensorData } from './graph-builder';
export { encodeModel, decodeModel, TensorDataType, AttributeType, type ModelProtoObject } from './proto';
export {
  buildSwinIROnnx, paddedSize, relativePositionBias, OnnxGraphError,
  type SiteHook, type SiteInfo, type SwinIROnnxOptions,
} from './swinir-onnx';
