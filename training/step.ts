/**
 * One training step and one evaluation batch, over any model of the zoo: forward in training
 * mode, cross-entropy, backward, SGD update, and the BatchNorm running statistics.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { BatchNorm2d } from "../models/layers.ts";
import { throwIfDeviceFailed } from "../ops/extensions.ts";
import { crossEntropy } from "../ops/loss.ts";
import { stateEntries } from "../models/weights.ts";
import type { NamedVariable, SGD } from "./optimizer.ts";

const paramCache = new WeakMap<tf.LayersModel, NamedVariable[]>();

/**
 * The model's trainable parameters by PyTorch name.
 *
 * @param model a model of the zoo
 * @returns named variables, in state-dict order
 */
export function namedParameters(model: tf.LayersModel): NamedVariable[] {
  let params = paramCache.get(model);
  if (!params) {
    params = stateEntries(model).filter((e) => e.trainable).map((e) => ({
      name: e.name,
      variable: e.variable.read() as tf.Variable,
    }));
    paramCache.set(model, params);
  }
  return params;
}

/** What {@link trainBatch} returns, still on the device. */
export interface BatchResult {
  /** Mean cross-entropy of the batch. */
  loss: tf.Scalar;
  /** Number of correct predictions. */
  correct: tf.Scalar;
  /** The training-mode logits, when asked for with `keepLogits`. */
  logits?: tf.Tensor2D;
  /** The gradients by parameter name (before the update), when asked for with `keepGrads`. */
  grads?: Map<string, tf.Tensor>;
}

/** Options of {@link trainBatch}. */
export interface TrainBatchOptions {
  /** Also return the training-mode logits. */
  keepLogits?: boolean;
  /** Also return the gradients (for inspection, clipping statistics, tests). */
  keepGrads?: boolean;
}

/**
 * One training step without reading anything back: forward in training mode, mean
 * cross-entropy, gradients, SGD update, BatchNorm running statistics.
 *
 * @param model a model of the zoo
 * @param opt the optimizer
 * @param images `[N, H, W, 3]` normalized images
 * @param labels `[N]` int32 labels
 * @param options what else to return
 * @returns the loss and the number of correct predictions (the caller disposes them)
 * @throws Error when the GPU reported an error since the last check (an earlier step's: this
 *   step's own errors surface at the caller's read, through `throwIfDeviceFailed`)
 */
export function trainBatch(
  model: tf.LayersModel,
  opt: SGD,
  images: tf.Tensor4D,
  labels: tf.Tensor1D,
  options: TrainBatchOptions = {},
): BatchResult {
  // An error of an earlier step's GPU work, reported since its read.
  throwIfDeviceFailed();
  const params = namedParameters(model);
  let correct: tf.Scalar | null = null;
  let kept: tf.Tensor2D | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const logits = model.apply(images, { training: true }) as tf.Tensor2D;
    correct = tf.keep(countCorrect(logits, labels));
    if (options.keepLogits) kept = tf.keep(logits.clone());
    return crossEntropy(logits, labels);
  }, params.map((p) => p.variable));
  const byName = new Map(params.map((p) => [p.name, grads[p.variable.name]]));
  opt.step(params, byName);
  BatchNorm2d.commitAll(model.layers);
  const result: BatchResult = { loss: value, correct: correct!, logits: kept };
  if (options.keepGrads) result.grads = byName;
  else tf.dispose(grads);
  return result;
}

/**
 * One training step, as `loss = criterion(model(x), y); loss.backward(); opt.step()` in
 * PyTorch, with the BatchNorm running statistics updated.
 *
 * @param model a model of the zoo
 * @param opt the optimizer
 * @param images `[N, H, W, 3]` normalized images
 * @param labels `[N]` int32 labels
 * @returns the batch's mean loss
 * @throws Error when the GPU reported an error during the step (its message)
 * @example
 * ```ts
 * import { tf } from "../deps.ts";
 * import { createModel } from "../models/registry.ts";
 * import { SGD } from "./optimizer.ts";
 * import { initBackend } from "../backend/backend.ts";
 * import { trainStep } from "./step.ts";
 * await initBackend({ backend: "cpu", log: null });
 * const model = createModel("resnet20", { seed: 1 });
 * const opt = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
 * const x = tf.randomNormal([2, 32, 32, 3]) as tf.Tensor4D, y = tf.tensor1d([3, 7], "int32");
 * console.log(await trainStep(model, opt, x, y) > 0); // true
 * ```
 */
export async function trainStep(
  model: tf.LayersModel,
  opt: SGD,
  images: tf.Tensor4D,
  labels: tf.Tensor1D,
): Promise<number> {
  const { loss, correct } = trainBatch(model, opt, images, labels);
  try {
    const value = (await loss.data())[0];
    throwIfDeviceFailed();
    return value;
  } finally {
    tf.dispose([loss, correct]);
  }
}

/**
 * Inference on one batch: logits in inference mode, summed loss and correct count.
 *
 * @param model a model of the zoo
 * @param images `[N, H, W, 3]` normalized images
 * @param labels `[N]` int32 labels
 * @returns the logits, the summed cross-entropy and the correct count (the caller disposes them)
 */
export function evalBatch(
  model: tf.LayersModel,
  images: tf.Tensor4D,
  labels: tf.Tensor1D,
): { logits: tf.Tensor2D; lossSum: tf.Scalar; correct: tf.Scalar } {
  return tf.tidy(() => {
    const logits = model.apply(images, { training: false }) as tf.Tensor2D;
    const lossSum = crossEntropy(logits, labels).mul(labels.shape[0]) as tf.Scalar;
    return { logits, lossSum, correct: countCorrect(logits, labels) };
  });
}

function countCorrect(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => logits.argMax(1).toInt().equal(labels.toInt()).sum());
}
