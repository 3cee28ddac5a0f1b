/**
 * Squeeze-and-excitation (torchvision's `SqueezeExcitation` on NHWC input) as one tfjs op,
 * {@link SQUEEZE_EXCITE}, and its gradient op; the WebGPU layer's kernels take three direct
 * dispatches forward and four backward, where the tf-ops composition (mean, two matMuls with
 * bias, ReLU, sigmoid, broadcast multiply, and their gradients) takes 29 in a RegNetY-400MF
 * training step (1049 dispatches per step before, 697 after, at 64x64 and batch 8).
 *
 * `y = x * sigmoid(relu(mean_hw(x) · W1 + b1) · W2 + b2)` with inputs `x` `[N, H, W, C]`, `w1`
 * `[C, S]`, `b1` `[S]`, `w2` `[S, C]`, `b2` `[C]`. Outputs: `y`, and `saved`, a flat tensor
 * holding what the gradient needs: `scale` (`[N, C]`, the sigmoid), `pooled` (`[N, C]`) and
 * `hidden` (`[N, S]`, after the ReLU), in that order, padded to a multiple of 4 values.
 *
 * | dispatch | forward | backward |
 * | --- | --- | --- |
 * | 1 | `pooled = Σ_hw x / HW` | `dscale = Σ_hw dy x` |
 * | 2 | per sample: `hidden`, then `scale` | per sample: `dz2 = dscale s (1 - s)`, `dz1 = (dz2 · W2ᵀ) [hidden > 0]`, `dpooled = dz1 · W1ᵀ` |
 * | 3 | `y = x * scale` | `dW1, db1, dW2, db2` (sums over N) |
 * | 4 | | `dx = dy * scale + dpooled / HW` |
 *
 * The ReLU's gradient is masked by `hidden > 0` (tfjs's convention); the sigmoid's is
 * `dscale * (s * (1 - s))`, as tfjs computes it. Gradients flowing into `saved` are ignored
 * (it is not meant to enter a loss; {@link squeezeExcitation} returns `y` only). No atomics: every
 * sum has a fixed order, so results are deterministic.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { kernelOnCurrentBackend } from "./support.ts";

/** Name of the squeeze-and-excitation op. */
export const SQUEEZE_EXCITE = "SqueezeExcite";
/**
 * Name of its gradient op: inputs `dy, x, w1, w2, saved`; outputs `dx, dw1, db1, dw2, db2`.
 */
export const SQUEEZE_EXCITE_GRAD = "SqueezeExciteGrad";

tf.registerGradient({
  kernelName: SQUEEZE_EXCITE,
  inputsToSave: ["x", "w1", "w2"],
  outputsToSave: [false, true],
  gradFunc: (dys, saved) => {
    // The gradient flowing into `saved` (zeros unless it entered the loss) is ignored.
    const dy = (Array.isArray(dys) ? dys[0] : dys) as tf.Tensor;
    const [x, w1, w2, out] = saved;
    const [dx, dw1, db1, dw2, db2] = tf.engine().runKernel(
      SQUEEZE_EXCITE_GRAD,
      { dy, x, w1, w2, saved: out },
      {},
    ) as tf.Tensor[];
    return { x: () => dx, w1: () => dw1, b1: () => db1, w2: () => dw2, b2: () => db2 };
  },
});

/**
 * The op: `x * sigmoid(relu(mean_hw(x) · w1 + b1) · w2 + b2)`, the scale broadcast over the
 * pixels. Differentiable in all five inputs (the gradient runs
 * {@link SQUEEZE_EXCITE_GRAD}). Needs a backend with the kernel
 * (`kernelOnCurrentBackend(SQUEEZE_EXCITE)`); {@link squeezeExcitation} picks it or tf ops.
 *
 * @param x input `[N, H, W, C]`, float32, not empty
 * @param params `w1` `[C, S]`, `b1` `[S]`, `w2` `[S, C]`, `b2` `[C]`
 * @returns `y`, shaped as `x`
 * @example
 * ```ts ignore
 * const y = fusedSqueezeExcite(x, { w1, b1, w2, b2 });
 * ```
 */
export function fusedSqueezeExcite(
  x: tf.Tensor4D,
  params: SqueezeExciteParams,
): tf.Tensor4D {
  const [y, saved] = tf.engine().runKernel(SQUEEZE_EXCITE, {
    x,
    w1: params.w1,
    b1: params.b1,
    w2: params.w2,
    b2: params.b2,
  }) as tf.Tensor[];
  saved.dispose();
  return y as tf.Tensor4D;
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
 * Where the current backend has the fused kernel ({@link SQUEEZE_EXCITE}, registered for
 * webgpu by `installWebGpu`), one op computes it (three dispatches forward, four
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
    kernelOnCurrentBackend(SQUEEZE_EXCITE)
  ) {
    return fusedSqueezeExcite(x, params);
  }
  return tf.tidy(() => {
    const [n, , , c] = x.shape;
    const pooled = x.mean([1, 2]) as tf.Tensor2D;
    const hidden = tf.relu(tf.matMul(pooled, w1).add(b1)) as tf.Tensor2D;
    const scale = tf.sigmoid(tf.matMul(hidden, w2).add(b2));
    return x.mul(scale.reshape([n, 1, 1, c])) as tf.Tensor4D;
  });
}
