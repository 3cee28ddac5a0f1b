/**
 * Image classifiers for Deno on WebGPU, exact against PyTorch: the reference code's ResNet20,
 * ResNet20 with ConvRNN or ConvGRU cells in its blocks, and torchvision's RegNetY-400MF, trained with
 * PyTorch's SGD and BatchNorm semantics through tfjs.
 *
 * ```ts
 * import { createModel, initBackend, SGD, tf, trainStep } from "./mod.ts";
 * await initBackend({ backend: "cpu", log: null });
 * const model = createModel("resnet20-convgru", { numClasses: 10, inputSize: 32, seed: 0 });
 * const images = tf.randomNormal([2, 32, 32, 3]) as tf.Tensor4D;
 * const labels = tf.tensor1d([1, 2], "int32");
 * const logits = model.predict(images) as tf.Tensor2D; // inference mode
 * const opt = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
 * const loss: number = await trainStep(model, opt, images, labels); // training mode
 * console.log(logits.shape, loss > 0); // [2, 10] true
 * tf.dispose([images, labels, logits]);
 * ```
 *
 * @module
 */
export { tf } from "./deps.ts";
export {
  BACKEND_NAMES,
  type BackendInfo,
  type BackendName,
  hasHardwareGpu,
  initBackend,
  type InitBackendOptions,
} from "./backend/backend.ts";
export {
  canonicalModelName,
  countParams,
  createModel,
  type CreateModelOptions,
  MODEL_ALIASES,
  MODEL_CHOICES,
  MODEL_NAMES,
  type ModelName,
  MODELS,
  modelSpec,
  modelSummary,
} from "./models/registry.ts";
export { buildResNet, type ResNetConfig } from "./models/resnet.ts";
export { buildRegNet, REGNET_CONFIGS, type RegNetConfig, regnetStages } from "./models/regnet.ts";
export {
  assignStateDict,
  type LoadOptions,
  type LoadReport,
  loadWeights,
  readStateDict,
  saveWeights,
  stateDict,
  stateEntries,
  type StateEntry,
  type WeightFormat,
} from "./models/weights.ts";
export { loadLayersModel, saveLayersModel } from "./models/tfjs_io.ts";
export { BatchNorm2d, Conv2d, ConvRecurrentCell, Linear, SqueezeExcite } from "./models/layers.ts";
export { parseSafetensors, type SafeTensor, serializeSafetensors } from "./io/safetensors.ts";
export { isZipArchive, parsePth, type PthContents } from "./io/pth.ts";
export { exportOnnx, ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUT } from "./models/onnx.ts";
export { type NamedVariable, SGD, type SGDOptions } from "./training/optimizer.ts";
export { evalBatch, namedParameters, trainBatch, trainStep } from "./training/step.ts";
export { CapturedEvalStep, CapturedTrainStep, type CaptureStats } from "./training/captured.ts";
import {
  CapturedEvalStep as CapturedEval,
  CapturedTrainStep as CapturedTrain,
  type CaptureStats as Stats,
} from "./training/captured.ts";
/** @deprecated Renamed {@link CapturedTrainStep}; this name goes in the next release. */
export const GraphedTrainStep = CapturedTrain;
/** @deprecated Renamed {@link CapturedTrainStep}; this name goes in the next release. */
export type GraphedTrainStep = CapturedTrain;
/** @deprecated Renamed {@link CapturedEvalStep}; this name goes in the next release. */
export const GraphedEvalStep = CapturedEval;
/** @deprecated Renamed {@link CapturedEvalStep}; this name goes in the next release. */
export type GraphedEvalStep = CapturedEval;
/** @deprecated Renamed {@link CaptureStats}; this name goes in the next release. */
export type GraphStats = Stats;
export { UserError } from "./util/errors.ts";
export {
  type Batch,
  batchCount,
  type BatchOptions,
  iterateBatches,
  normalizePixels,
} from "./data/batches.ts";
export { type ImageDataset, takeFirst } from "./data/dataset.ts";
export {
  DATASET_NAMES,
  type DatasetName,
  loadDataset,
  type LoadDatasetOptions,
} from "./data/load.ts";
export { learningRate, PRESETS, resolveConfig, type TrainConfig } from "./training/config.ts";
export { resumedConfig, train, type TrainOptions, type TrainResult } from "./training/loop.ts";
export { compareRuns, type ModelSource, resolveModelSource, RunFolder } from "./run/folder.ts";
export { evaluate, type Evaluation } from "./training/evaluate.ts";
export {
  classifyBatch,
  classifyImages,
  type ClassifyOptions,
  type Prediction,
  storedImageSize,
} from "./training/classify.ts";
export { type GridItem, renderPredictionGrid } from "./report/grid.ts";
export { renderCurves } from "./report/curves.ts";
export { type ComparedRun, compareTable } from "./report/compare.ts";
export { batchNormTraining, runningStatsUpdate } from "./ops/batchnorm.ts";
export { conv2d, type ConvSpec } from "./ops/conv.ts";
export { squeezeExcitation } from "./ops/squeeze_excite.ts";
export { crossEntropy } from "./ops/loss.ts";
export {
  adapterProfile,
  installWebGpu,
  profileFor,
  registerFastKernels,
  unregisterFastKernels,
  type WebGpuHandle,
  webGpuInstall,
  type WebGpuOptions,
} from "./webgpu/install.ts";
export { countDispatches } from "./webgpu/runtime/counters.ts";
