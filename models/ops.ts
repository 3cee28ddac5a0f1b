/**
 * Tensor functions with PyTorch's semantics, written once over tfjs ops so every layer and every
 * backend shares them: convolution with symmetric padding and groups, batch normalization, the
 * recurrent cells' updates. Nothing here names a backend; the fast WebGPU kernels replace the
 * tfjs kernels underneath (`kernels/`), not these functions.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { batchNormTrain, fusedBatchNormAvailable } from "../kernels/batchnorm.ts";
import { groupedConv, groupedConvAvailable } from "../kernels/grouped_conv.ts";
import {
  runningStats,
  runningStatsAvailable,
  runningStatsInPlace,
} from "../kernels/running_stats.ts";
import { squeezeExcite, squeezeExciteAvailable } from "../kernels/squeeze_excite.ts";

/** How a convolution is applied, as `torch.nn.Conv2d` takes it. */
export interface ConvSpec {
  /** Stride in both directions. */
  stride: number;
  /** Zero padding on every side (PyTorch's `padding=int`). */
  padding: number;
  /** Number of channel groups (1 = ordinary convolution). */
  groups: number;
}

/**
 * A 2-D convolution as `torch.nn.functional.conv2d` computes it, on NHWC input.
 *
 * @param x input `[N, H, W, C]`
 * @param kernel filter `[kh, kw, C / groups, out]` (PyTorch's `[out, C / groups, kh, kw]` transposed)
 * @param spec stride, symmetric padding and groups
 * @returns `[N, H', W', out]`
 */
export function conv2d(x: tf.Tensor4D, kernel: tf.Tensor4D, spec: ConvSpec): tf.Tensor4D {
  const pad = spec.padding === 0 ? "valid" : spec.padding;
  if (spec.groups === 1) return tf.conv2d(x, kernel, spec.stride, pad);
  return groupedConv2d(x, kernel, spec.stride, pad, spec.groups);
}

/**
 * Grouped convolution. Where the current backend has the grouped-convolution kernel
 * (`kernels/grouped_conv.ts`, registered for webgpu by `registerFastKernels`), one op computes
 * it (one dispatch forward, three backward). Elsewhere it is exact from one depthwise
 * convolution and one sum: input channel `c` of group `g` is convolved with the `gi x go` block
 * of group `g` by a depthwise filter with channel multiplier `go`, then the `gi` partial outputs
 * of each group are summed.
 */
function groupedConv2d(
  x: tf.Tensor4D,
  kernel: tf.Tensor4D,
  stride: number,
  pad: "valid" | number,
  groups: number,
): tf.Tensor4D {
  const attrs = { stride, pad: pad === "valid" ? 0 : pad, groups };
  if (
    x.dtype === "float32" && kernel.dtype === "float32" &&
    groupedConvAvailable(x.shape, kernel.shape, attrs)
  ) {
    return groupedConv(x, kernel, attrs);
  }
  return tf.tidy(() => {
    const [kh, kw, gi, out] = kernel.shape;
    const go = out / groups;
    // [kh, kw, gi, G, go] -> [kh, kw, G, gi, go] -> [kh, kw, G * gi, go]
    const depthwise = kernel.reshape([kh, kw, gi, groups, go]).transpose([0, 1, 3, 2, 4])
      .reshape([kh, kw, groups * gi, go]) as tf.Tensor4D;
    const y = tf.depthwiseConv2d(x, depthwise, stride, pad); // [N, H', W', G * gi * go]
    const [n, h, w] = y.shape;
    return y.reshape([n, h, w, groups, gi, go]).sum(4).reshape([n, h, w, out]) as tf.Tensor4D;
  });
}

/** Batch statistics of a training-mode batch normalization, for the running averages. */
export interface BatchStats {
  /** Per-channel mean over N, H, W. */
  mean: tf.Tensor1D;
  /** Per-channel biased variance over N, H, W (what normalizes the batch). */
  variance: tf.Tensor1D;
  /** Number of values per channel (N * H * W), for the unbiased correction. */
  count: number;
}

/** Options of {@link batchNormTraining}. */
export interface BatchNormTrainingOptions {
  /** Activation applied to the normalized output (`"linear"`, the default, or `"relu"`). */
  activation?: "linear" | "relu";
  /**
   * A residual shaped as `x`, added to the normalized output before the activation:
   * `act(bn(x) + shortcut)`, as `relu(add(bn(x), shortcut))` computes it (a ResNet block's tail).
   */
  shortcut?: tf.Tensor4D;
}

/**
 * Batch normalization in training mode over the channel axis of NHWC input: normalizes with the
 * batch's mean and biased variance, as `torch.nn.BatchNorm2d` does in `train()` mode. Where the
 * current backend has the fused kernel (`kernels/batchnorm.ts`, registered for webgpu by
 * `registerFastKernels`), one fused op does it (three dispatches forward and three backward,
 * the residual add and the activation included); elsewhere `tf.moments`, `tf.batchNorm`,
 * `tf.add` and `tf.relu` do.
 *
 * @param x input `[N, H, W, C]`
 * @param gamma scale `[C]`
 * @param beta offset `[C]`
 * @param epsilon added to the variance
 * @param options the activation to apply after the normalization, and a residual to add first
 * @returns the normalized (and activated) tensor and the batch statistics
 */
export function batchNormTraining(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
  options: BatchNormTrainingOptions = {},
): { y: tf.Tensor4D; stats: BatchStats } {
  const activation = options.activation ?? "linear";
  const shortcut = options.shortcut;
  const [n, h, w] = x.shape;
  if (
    x.dtype === "float32" && x.size > 0 && fusedBatchNormAvailable() &&
    (shortcut === undefined || shortcut.dtype === "float32")
  ) {
    const { y, mean, variance } = batchNormTrain(x, {
      gamma,
      beta,
      epsilon,
      activation,
      shortcut,
    });
    return { y: y as tf.Tensor4D, stats: { mean, variance, count: n * h * w } };
  }
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  const normalized = tf.batchNorm(x, mean, variance, beta, gamma, epsilon);
  const z = shortcut ? tf.add(normalized, shortcut) : normalized;
  const y = activation === "relu" ? tf.relu(z) : z;
  return {
    y: y as tf.Tensor4D,
    stats: { mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D, count: n * h * w },
  };
}

/** Parameters of {@link squeezeExcitation}: the two fully connected layers. */
export interface SqueezeExciteParams {
  /** `fc1` weight `[C, S]`. */
  w1: tf.Tensor2D;
  /** `fc1` bias `[S]`. */
  b1: tf.Tensor1D;
  /** `fc2` weight `[S, C]`. */
  w2: tf.Tensor2D;
  /** `fc2` bias `[C]`. */
  b2: tf.Tensor1D;
}

/**
 * torchvision's `SqueezeExcitation` on NHWC input: `x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`.
 * Where the current backend has the fused kernel (`kernels/squeeze_excite.ts`, registered for
 * webgpu by `registerFastKernels`), one op computes it (three dispatches forward, four
 * backward); elsewhere `tf.mean`, `tf.matMul`, `tf.relu`, `tf.sigmoid` and `tf.mul` do.
 *
 * @param x input `[N, H, W, C]`
 * @param params the weights and biases of `fc1` and `fc2`
 * @returns `x` scaled channel by channel, shaped as `x`
 */
export function squeezeExcitation(x: tf.Tensor4D, params: SqueezeExciteParams): tf.Tensor4D {
  const { w1, b1, w2, b2 } = params;
  if (
    x.size > 0 && [x, w1, b1, w2, b2].every((t) => t.dtype === "float32") &&
    squeezeExciteAvailable()
  ) {
    return squeezeExcite(x, params);
  }
  return tf.tidy(() => {
    const [n, , , c] = x.shape;
    const pooled = x.mean([1, 2]) as tf.Tensor2D;
    const hidden = tf.relu(tf.matMul(pooled, w1).add(b1)) as tf.Tensor2D;
    const scale = tf.sigmoid(tf.matMul(hidden, w2).add(b2));
    return x.mul(scale.reshape([n, 1, 1, c])) as tf.Tensor4D;
  });
}

/**
 * The running-average update of `torch.nn.BatchNorm2d`: `running = (1 - m) * running + m * batch`,
 * with the unbiased batch variance. Where the current backend has the fused kernel
 * (`kernels/running_stats.ts`, registered for webgpu by `registerFastKernels`), one op computes
 * both (two dispatches instead of six).
 *
 * @returns the new running mean and variance
 */
export function runningStatsUpdate(
  runningMean: tf.Tensor1D,
  runningVar: tf.Tensor1D,
  stats: BatchStats,
  momentum: number,
): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  return tf.tidy(() => {
    const correction = stats.count > 1 ? stats.count / (stats.count - 1) : 1;
    const all = [runningMean, runningVar, stats.mean, stats.variance];
    if (all.every((t) => t.dtype === "float32") && runningStatsAvailable()) {
      return runningStats({ mean: runningMean, variance: runningVar }, stats, {
        momentum,
        correction,
      });
    }
    const mean = runningMean.mul(1 - momentum).add(stats.mean.mul(momentum)) as tf.Tensor1D;
    const variance = runningVar.mul(1 - momentum).add(
      stats.variance.mul(correction * momentum),
    ) as tf.Tensor1D;
    return { mean, variance };
  });
}

/** One layer's running statistics for {@link runningStatsUpdateInPlace}. */
export interface RunningStatsItem {
  /** Running mean variable `[C]`. */
  runningMean: tf.Variable;
  /** Running variance variable `[C]`. */
  runningVar: tf.Variable;
  /** The batch's statistics. */
  stats: BatchStats;
  /** The layer's momentum. */
  momentum: number;
  /** The layer's batch counter, to add one to (float32 scalar), if any. */
  count?: tf.Variable;
}

/**
 * {@link runningStatsUpdate} for many layers at once, written into the variables in place, where
 * the backend has a kernel for it (webgpu after `registerFastKernels`: a few dispatches for a
 * whole model).
 *
 * @param items the layers' running and batch statistics
 * @returns false when the backend has no such kernel (nothing was done)
 */
export function runningStatsUpdateInPlace(items: readonly RunningStatsItem[]): boolean {
  return runningStatsInPlace(items.map((it) => ({
    runningMean: it.runningMean,
    runningVar: it.runningVar,
    batchMean: it.stats.mean,
    batchVar: it.stats.variance,
    attrs: {
      momentum: it.momentum,
      correction: it.stats.count > 1 ? it.stats.count / (it.stats.count - 1) : 1,
    },
    count: it.count,
  })));
}

/**
 * The seed's ConvRNN update: `h' = tanh(conv3x3(concat[x, h]) + bias)`.
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
 * The seed's ConvGRU update: `z = concat[x, h]`; `a, b = sigmoid(split(conv_x(z), 2))`;
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
