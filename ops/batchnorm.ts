/**
 * Batch normalization in training mode (optionally followed by a residual add and a ReLU) as one
 * tfjs op, {@link FUSED_BATCH_NORM}, and its gradient op; the WebGPU layer has kernels for both:
 * three dispatches forward and three backward, where the tf-ops composition (`tf.moments` then
 * `tf.batchNorm`, and their gradients) takes dozens.
 *
 * Inputs `x` `[N, H, W, C]` (any rank, channels last), `gamma` `[C]`, `beta` `[C]`, and with
 * attr `residual` a `shortcut` shaped as `x`; attrs `epsilon` and `activation` (`"linear"` or
 * `"relu"`); outputs `y` (`act(bn(x))`, or `act(bn(x) + shortcut)`), the batch `mean` and the
 * biased batch `variance` (each `[C]`). The rows of `x` (`M = N * H * W` of them) are split
 * into chunks; per channel:
 *
 * | dispatch | forward | backward |
 * | --- | --- | --- |
 * | 1 | per chunk: mean, then centred sum of squares (two passes over the chunk) | per chunk: `Σ g`, `Σ g (x - mean)` with `g` = `dy` (masked by `y > 0` after ReLU) |
 * | 2 | mean: chunk means merged (Chan et al.); variance: `Σ M2_s + n_s (mean_s - mean)²` over chunks, over `M` | `dbeta = Σ g`, `dgamma = Σ g x̂` |
 * | 3 | `y = (x - mean) γ / sqrt(var + eps) + β` (then `+ shortcut`, then ReLU) | `dx` (and `dshortcut = g`) |
 *
 * The merges and the backward's third pass write two outputs each, so they are direct
 * dispatches (`webgpu/runtime/direct.ts`); the others are tfjs programs. With a residual, `bn(x)` is rounded to
 * f32 before the add and the ReLU is tfjs's, so `y` equals the unfused `relu(add(bn(x),
 * shortcut))` bit for bit, and so do the gradients (`g` is `dy` where `y > 0`, else 0).
 *
 * The centred two-pass scheme keeps the variance exact for data with a large mean and a small
 * spread (where `E[x²] - E[x]²` in f32 cancels to noise). The gradient also takes the gradients
 * flowing into the `mean` and `variance` outputs, so the op is a drop-in for the tf-ops path
 * under any loss. No atomics: results are deterministic.
 *
 * Also here: {@link batchNormTraining}, the public function (the fused op where the current
 * backend has its kernel, tf ops elsewhere), and BatchNorm's running averages.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { kernelOnCurrentBackend } from "./support.ts";
import { provided } from "./extensions.ts";

/**
 * Name of the fused training-mode batch-norm op (`FusedBatchNorm` is taken: tfjs names its
 * inference-mode `tf.batchNorm` kernel so).
 */
export const FUSED_BATCH_NORM = "FusedBatchNormTraining";
/**
 * Name of its gradient op: inputs `dy, x, y, mean, variance, gamma, dmean, dvar`; outputs `dx,
 * dgamma, dbeta`, then `dshortcut` with a residual.
 */
export const FUSED_BATCH_NORM_GRAD = "FusedBatchNormTrainingGrad";

/** Activation fused after the normalization. */
export type BatchNormActivation = "linear" | "relu";

/** Attributes of {@link FUSED_BATCH_NORM} and its gradient. */
export interface FusedBatchNormAttrs {
  /** Added to the variance before the square root (PyTorch's `eps`). */
  epsilon: number;
  /** Activation applied to the normalized output (after the residual add, if any). */
  activation: BatchNormActivation;
  /**
   * Whether the op takes a `shortcut` input (shaped as `x`) added to the normalized output
   * before the activation: `y = act(bn(x) + shortcut)`, a ResNet block's tail. Absent: false.
   */
  residual?: boolean;
}

tf.registerGradient({
  kernelName: FUSED_BATCH_NORM,
  inputsToSave: ["x", "gamma"],
  outputsToSave: [true, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [dy, dmean, dvar] = dys as tf.Tensor[];
    const [x, gamma, y, mean, variance] = saved;
    const [dx, dgamma, dbeta, dshortcut] = tf.engine().runKernel(
      FUSED_BATCH_NORM_GRAD,
      { dy, x, y, mean, variance, gamma, dmean, dvar },
      attrs as unknown as tf.NamedAttrMap,
    ) as tf.Tensor[];
    const grads: Record<string, () => tf.Tensor> = {
      x: () => dx,
      gamma: () => dgamma,
      beta: () => dbeta,
    };
    if (dshortcut) grads.shortcut = () => dshortcut;
    return grads;
  },
});

/**
 * The fused op: training-mode batch normalization over all axes but the last, then the
 * residual add (with a `shortcut`), then the activation. Differentiable (the gradient runs {@link FUSED_BATCH_NORM_GRAD}).
 * Needs a backend with the kernel (`kernelOnCurrentBackend(FUSED_BATCH_NORM)`).
 *
 * @param x input, channels last, float32, not empty
 * @param params `gamma`, `beta` (`[C]`), `epsilon`, the activation (`"linear"` default), and
 *   a `shortcut` shaped as `x` to add before the activation (`y = act(bn(x) + shortcut)`)
 * @returns the output and the batch mean and biased variance
 * @example
 * ```ts ignore
 * const { y, mean, variance } = fusedBatchNorm(x, { gamma, beta, epsilon: 1e-5 });
 * ```
 */
export function fusedBatchNorm(
  x: tf.Tensor,
  params: {
    gamma: tf.Tensor1D;
    beta: tf.Tensor1D;
    epsilon: number;
    activation?: BatchNormActivation;
    shortcut?: tf.Tensor;
  },
): { y: tf.Tensor; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const attrs: FusedBatchNormAttrs = {
    epsilon: params.epsilon,
    activation: params.activation ?? "linear",
    residual: params.shortcut !== undefined,
  };
  const inputs: tf.NamedTensorMap = { x, gamma: params.gamma, beta: params.beta };
  if (params.shortcut) inputs.shortcut = params.shortcut;
  const [y, mean, variance] = tf.engine().runKernel(
    FUSED_BATCH_NORM,
    inputs,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
  return { y, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
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
  activation?: BatchNormActivation;
  /**
   * A residual shaped as `x`, added to the normalized output before the activation:
   * `act(bn(x) + shortcut)`, as `relu(add(bn(x), shortcut))` computes it (a ResNet block's tail).
   */
  shortcut?: tf.Tensor4D;
}

/**
 * Batch normalization in training mode over the channel axis of NHWC input: normalizes with the
 * batch's mean and biased variance, as `torch.nn.BatchNorm2d` does in `train()` mode. Where the
 * current backend has the fused kernel ({@link FUSED_BATCH_NORM}, registered for webgpu by
 * `installWebGpu`), one fused op does it (three dispatches forward and three backward,
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
    x.dtype === "float32" && x.size > 0 && kernelOnCurrentBackend(FUSED_BATCH_NORM) &&
    (shortcut === undefined || shortcut.dtype === "float32")
  ) {
    const { y, mean, variance } = fusedBatchNorm(x, {
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

/**
 * The running-average update of `torch.nn.BatchNorm2d`: `running = (1 - m) * running + m * batch`,
 * with the unbiased batch variance, in tf ops ({@link runningStatsUpdateInPlace} does many
 * layers at once, in place, where the backend provides it).
 *
 * @param runningMean the running mean `[C]`
 * @param runningVar the running variance `[C]`
 * @param stats the batch's statistics
 * @param momentum the layer's momentum
 * @returns the new running mean and variance
 */
export function runningStatsUpdate(
  runningMean: tf.Tensor1D,
  runningVar: tf.Tensor1D,
  stats: BatchStats,
  momentum: number,
): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  return tf.tidy(() => {
    const correction = varianceCorrection(stats.count);
    const mean = runningMean.mul(1 - momentum).add(stats.mean.mul(momentum)) as tf.Tensor1D;
    const variance = runningVar.mul(1 - momentum).add(
      stats.variance.mul(correction * momentum),
    ) as tf.Tensor1D;
    return { mean, variance };
  });
}

/** Bessel's correction `n / (n - 1)` of a biased variance over `n` values (1 when `n <= 1`). */
function varianceCorrection(count: number): number {
  return count > 1 ? count / (count - 1) : 1;
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

/** One layer's running statistics as a backend's in-place update takes them. */
export interface RunningStatsSlot {
  /** Running mean `[C]` (float32). */
  runningMean: tf.Variable;
  /** Running variance `[C]` (float32). */
  runningVar: tf.Variable;
  /** Batch mean `[C]`. */
  batchMean: tf.Tensor;
  /** Biased batch variance `[C]`. */
  batchVar: tf.Tensor;
  /** Momentum and variance correction. */
  attrs: { momentum: number; correction: number };
  /** The layer's batch counter (`num_batches_tracked`, a float32 scalar): one is added. */
  count?: tf.Variable;
}

/**
 * Whether the current backend updates running statistics in place.
 *
 * @returns true when {@link runningStatsUpdateInPlace} applies
 */
export function inPlaceRunningStatsAvailable(): boolean {
  return provided("runningStats") !== null;
}

/**
 * {@link runningStatsUpdate} for many layers at once, written into the variables in place, where
 * the current backend provides it (webgpu after `installWebGpu`: a few dispatches for a whole
 * model), with the batch counters counted too.
 *
 * @param items the layers' running and batch statistics
 * @returns false when the backend provides no such update (nothing was done)
 */
export function runningStatsUpdateInPlace(items: readonly RunningStatsItem[]): boolean {
  const update = provided("runningStats");
  if (update === null) return false;
  return update(items.map((it) => ({
    runningMean: it.runningMean,
    runningVar: it.runningVar,
    batchMean: it.stats.mean,
    batchVar: it.stats.variance,
    attrs: { momentum: it.momentum, correction: varianceCorrection(it.stats.count) },
    count: it.count,
  })));
}
