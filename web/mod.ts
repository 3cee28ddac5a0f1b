/**
 * The toolkit in a browser: the models, their weights read from bytes (safetensors, PyTorch's
 * `.pth`), the training step with PyTorch's SGD, and the backend start (WebGPU with the toolkit's
 * kernels, else WebGL, else cpu). Nothing here uses `Deno` or `node:` when loaded, and nothing
 * reads files or datasets: `deno task bundle` makes one ES module of it
 * (`dist/regnet-vision.js`), and a page imports that.
 *
 * ```ts
 * import { createModel, startBackend, tf } from "./mod.ts";
 * const info = await startBackend({ backends: ["cpu"] }); // a page: startBackend()
 * const model = createModel("resnet20", { numClasses: 10, inputSize: 32, seed: 0 });
 * const logits = tf.tidy(() => model.predict(tf.zeros([1, 32, 32, 3])) as tf.Tensor2D);
 * console.log(info.backend, logits.shape); // "cpu" [1, 10]
 * logits.dispose();
 * ```
 *
 * @module
 */
export { tf } from "../deps.ts";
export {
  BROWSER_BACKENDS,
  type BrowserBackendInfo,
  type BrowserBackendName,
  startBackend,
  type StartBackendOptions,
  webGpuDevice,
} from "./backend.ts";
export {
  installWebGpu,
  type KernelProfile,
  type WebGpuHandle,
  webGpuInstall,
  type WebGpuOptions,
} from "../webgpu/install.ts";
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
} from "../models/registry.ts";
export { buildResNet, type ResNetConfig } from "../models/resnet.ts";
export { buildRegNet, REGNET_CONFIGS, type RegNetConfig, regnetStages } from "../models/regnet.ts";
export { BatchNorm2d, Conv2d, ConvRecurrentCell, Linear, SqueezeExcite } from "../models/layers.ts";
export {
  assignStateDict,
  type LoadOptions,
  type LoadReport,
  readStateDict,
  stateDict,
  stateEntries,
  type StateEntry,
  type WeightFormat,
} from "../models/weights.ts";
export { parseSafetensors, type SafeTensor, serializeSafetensors } from "../io/safetensors.ts";
export { isZipArchive, parsePth, type PthContents } from "../io/pth.ts";
export { conv2d, type ConvSpec, groupedConv } from "../ops/conv.ts";
export { batchNormTraining, fusedBatchNorm } from "../ops/batchnorm.ts";
export { squeezeExcitation } from "../ops/squeeze_excite.ts";
export { convGruStep, convRnnStep } from "../ops/recurrent.ts";
export { crossEntropy } from "../ops/loss.ts";
export { type NamedVariable, SGD, type SGDOptions } from "../training/optimizer.ts";
export { evalBatch, namedParameters, trainBatch, trainStep } from "../training/step.ts";
export { normalizePixels } from "../data/batches.ts";
export { resizeBilinear, type RgbImage } from "../data/resize.ts";
export {
  classifyBatch,
  classifyImages,
  type ClassifyOptions,
  type Prediction,
} from "../training/classify.ts";
export { UserError } from "../util/errors.ts";
