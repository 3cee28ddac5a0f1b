/**
 * Losses with PyTorch's semantics.
 *
 * @module
 */
import { tf } from "../deps.ts";

/**
 * Mean cross-entropy of `logits` against integer `labels`, as `torch.nn.CrossEntropyLoss()`.
 *
 * @param logits `[N, classes]`
 * @param labels `[N]` int32 class indices
 * @returns scalar loss
 */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const oneHot = tf.oneHot(labels, logits.shape[1]);
    return tf.logSoftmax(logits).mul(oneHot).sum(1).mean().neg() as tf.Scalar;
  });
}
