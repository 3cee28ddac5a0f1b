/**
 * Classifying images with a trained model: the top classes of each image and their softmax
 * probabilities. Backend-neutral and without `Deno` or `node:` imports, so that a web page can
 * use it as the `predict` command does. The pixels are prepared as training prepared them:
 * {@link storedImageSize} says what size the decoded images are resized to on the host, and the
 * batches are normalized (and, for CIFAR runs of another input size, resized on the backend) by
 * the training pipeline's own {@link iterateBatches}.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { iterateBatches } from "../data/batches.ts";
import { makeDataset } from "../data/dataset.ts";

/** The most probable classes of one image, most probable first. */
export interface Prediction {
  /** Class indices (rows of the model's head). */
  classes: number[];
  /** Their softmax probabilities, in the same order (non-increasing). */
  probabilities: number[];
}

/** Options of {@link classifyImages}. */
export interface ClassifyOptions {
  /** The model's input size (the batches are resized to it on the backend if needed). */
  inputSize: number;
  /** Images per batch; 64 when absent. */
  batchSize?: number;
  /** How many classes to keep per image; 3 when absent (at most the number of classes). */
  top?: number;
}

/**
 * The side of the square that decoded images are resized to (PIL-style bilinear, on the host)
 * before they are batched, as training loads its data: an image-folder run's images go straight
 * to the input size; CIFAR images are 32x32, so a photo for a CIFAR run goes to 32x32, and the
 * batch is then resized on the backend to the input size when that differs (as in training).
 *
 * @param dataset the run's dataset: `cifar10`, `cifar100` or `folder`
 * @param inputSize the model's input size
 * @returns the stored side
 * @example
 * ```ts
 * import { storedImageSize } from "./classify.ts";
 * console.log(storedImageSize("folder", 224), storedImageSize("cifar10", 224)); // 224 32
 * ```
 */
export function storedImageSize(dataset: string, inputSize: number): number {
  return dataset === "folder" ? inputSize : 32;
}

/**
 * The top `top` classes of each image of a batch: logits (inference mode), softmax and top-k
 * inside `tf.tidy`, read with `await data()`. The batch itself is left to the caller.
 *
 * @param model a classifier of the zoo
 * @param images `[n, inputSize, inputSize, 3]`, normalized as in training
 * @param top classes to keep per image (clamped to the number of classes)
 * @returns one prediction per image, in batch order
 * @example
 * ```ts
 * import { classifyBatch } from "./classify.ts";
 * import { createModel } from "../models/registry.ts";
 * import { initBackend } from "../backend/backend.ts";
 * import { tf } from "../deps.ts";
 * await initBackend({ backend: "cpu", log: null });
 * const model = createModel("resnet20", { numClasses: 10, seed: 0 });
 * const x = tf.zeros([2, 32, 32, 3]) as tf.Tensor4D;
 * const [first] = await classifyBatch(model, x, 3);
 * console.log(first.classes.length, first.probabilities.length); // 3 3
 * tf.dispose(x);
 * model.dispose();
 * ```
 */
export async function classifyBatch(
  model: tf.LayersModel,
  images: tf.Tensor4D,
  top: number,
): Promise<Prediction[]> {
  if (!Number.isInteger(top) || top < 1) throw new RangeError(`top must be >= 1, got ${top}`);
  const { values, indices } = tf.tidy(() => {
    const logits = model.apply(images, { training: false }) as tf.Tensor2D;
    const k = Math.min(top, logits.shape[1]);
    return tf.topk(tf.softmax(logits), k, true);
  });
  try {
    const [p, c] = await Promise.all([values.data(), indices.data()]);
    const [n, k] = values.shape as [number, number];
    return Array.from({ length: n }, (_, i) => ({
      classes: Array.from(c.subarray(i * k, (i + 1) * k)),
      probabilities: Array.from(p.subarray(i * k, (i + 1) * k)),
    }));
  } finally {
    tf.dispose([values, indices]);
  }
}

/**
 * Classifies images held as 8-bit RGB squares of one size (see {@link storedImageSize}), in
 * batches, in order: each batch is normalized (`normalizePixels`) and resized to the input size
 * exactly as the training and evaluation batches are.
 *
 * @param model a classifier of the zoo
 * @param images `count` images of `size x size x 3` bytes, back to back
 * @param options input size, batch size, top
 * @returns one prediction per image, in order
 */
export async function classifyImages(
  model: tf.LayersModel,
  images: { pixels: Uint8Array; count: number; size: number },
  options: ClassifyOptions,
): Promise<Prediction[]> {
  const { pixels, count, size } = images;
  const dataset = makeDataset({
    classNames: ["?"],
    size: count,
    height: size,
    width: size,
    pixels,
    labels: new Int32Array(count),
    source: "images",
  });
  const predictions: Prediction[] = [];
  const batches = iterateBatches(dataset, {
    batchSize: options.batchSize ?? 64,
    shuffle: false,
    seed: 0,
    epoch: 0,
    inputSize: options.inputSize,
  });
  for await (const batch of batches) {
    try {
      predictions.push(...await classifyBatch(model, batch.x, options.top ?? 3));
    } finally {
      tf.dispose([batch.x, batch.y]);
    }
  }
  return predictions;
}
