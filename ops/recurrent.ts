/**
 * The recurrent cells' updates of the reference code's ResNet20 variants (ConvRNN, ConvGRU),
 * over tf ops and {@link conv2d}.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { conv2d } from "./conv.ts";

/**
 * The reference code's ConvRNN update: `h' = tanh(conv3x3(concat[x, h]) + bias)`.
 */
export function convRnnStep(
  x: tf.Tensor4D,
  h: tf.Tensor4D,
  kernel: tf.Tensor4D,
  bias: tf.Tensor1D,
): tf.Tensor4D {
  return tf.tidy(() => tf.tanh(conv3x3Bias(tf.concat([x, h], 3), kernel, bias)));
}

/**
 * The reference code's ConvGRU update: `z = concat[x, h]`; `a, b = sigmoid(split(conv_x(z), 2))`;
 * `y = tanh(conv_y(concat[z, b * h]))`; `h' = a * h + (1 - a) * y`.
 */
export function convGruStep(
  x: tf.Tensor4D,
  h: tf.Tensor4D,
  kernelX: tf.Tensor4D,
  biasX: tf.Tensor1D,
  kernelY: tf.Tensor4D,
  biasY: tf.Tensor1D,
): tf.Tensor4D {
  return tf.tidy(() => {
    const z = tf.concat([x, h], 3);
    const [a, b] = tf.split(tf.sigmoid(conv3x3Bias(z, kernelX, biasX)), 2, 3);
    const y = tf.tanh(conv3x3Bias(tf.concat([z, b.mul(h)], 3), kernelY, biasY));
    return a.mul(h).add(tf.scalar(1).sub(a).mul(y)) as tf.Tensor4D;
  });
}

function conv3x3Bias(x: tf.Tensor4D, kernel: tf.Tensor4D, bias: tf.Tensor1D): tf.Tensor4D {
  return conv2d(x, kernel, { stride: 1, padding: 1, groups: 1 }).add(bias) as tf.Tensor4D;
}
