/**
 * Evaluation over a whole dataset: mean loss, accuracy and every prediction, in inference mode.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { iterateBatches } from "../data/batches.ts";
import { throwIfDeviceFailed } from "../ops/extensions.ts";
import type { ImageDataset } from "../data/dataset.ts";
import { evalBatch } from "./step.ts";
import { CapturedEvalStep } from "./captured.ts";

/** What {@link evaluate} measured. */
export interface Evaluation {
  /** Mean cross-entropy. */
  loss: number;
  /** Fraction of correct predictions. */
  accuracy: number;
  /** Predicted class of every image, in dataset order. */
  predictions: Int32Array;
  /** Seconds taken. */
  seconds: number;
}

/**
 * Evaluates a model on a dataset, in order, in inference mode.
 *
 * @param model a model of the zoo
 * @param dataset the images
 * @param options batch size, the model's input size, and `eager` to run every batch through
 *   tfjs (by default the batch is captured once and replayed on webgpu: same results)
 * @returns loss, accuracy and predictions
 */
export async function evaluate(
  model: tf.LayersModel,
  dataset: ImageDataset,
  options: { batchSize: number; inputSize: number; eager?: boolean },
): Promise<Evaluation> {
  const start = performance.now();
  const predictions = new Int32Array(dataset.size);
  let lossSum = 0, correct = 0;
  const batches = iterateBatches(dataset, {
    batchSize: options.batchSize,
    shuffle: false,
    seed: 0,
    epoch: 0,
    inputSize: options.inputSize,
  });
  const graph = options.eager ? null : new CapturedEvalStep(model);
  try {
    for await (const batch of batches) {
      const out = graph ? graph.run(batch.x, batch.y) : evalBatch(model, batch.x, batch.y);
      const predicted = tf.tidy(() => out.logits.argMax(1));
      const [loss, right, pred] = await Promise.all([
        out.lossSum.data(),
        out.correct.data(),
        predicted.data(),
      ]).finally(() => tf.dispose([out.logits, out.lossSum, out.correct, predicted]));
      throwIfDeviceFailed();
      lossSum += loss[0];
      correct += right[0];
      batch.indices.forEach((index, i) => predictions[index] = pred[i]);
      tf.dispose([batch.x, batch.y]);
    }
  } finally {
    graph?.dispose();
  }
  return {
    loss: lossSum / dataset.size,
    accuracy: correct / dataset.size,
    predictions,
    seconds: (performance.now() - start) / 1000,
  };
}
