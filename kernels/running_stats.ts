/**
 * The BatchNorm running-average update as one tfjs op, {@link RUNNING_STATS_KERNEL}, with a
 * WebGPU kernel of two dispatches (one per output) where the tf-ops composition takes six
 * (`mul`, `mul`, `add` for each of the mean and the variance):
 *
 * - `mean' = (1 - momentum) · runningMean + momentum · batchMean`
 * - `var'  = (1 - momentum) · runningVar + (correction · momentum) · batchVar`
 *
 * Inputs `runningMean`, `runningVar`, `batchMean`, `batchVar` (`[C]`, float32); attrs
 * `momentum` and `correction` (the unbiased-variance factor `n / (n - 1)`); outputs the new
 * mean and variance. The factors are rounded to float32 as the tf-ops path rounds its scalars.
 * Not differentiable (the update is outside the gradient tape).
 *
 * {@link runningStatsInPlace} does the same update for every BatchNorm layer of a model at once,
 * in place, as a multi-tensor kernel (a ResNet20's 21 layers: one dispatch at 64 storage buffers
 * per dispatch, where the op takes 42).
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import type { WebGPUProgram } from "./gemm_program.ts";
import { ownForWrite } from "./direct.ts";
import { kernelOnCurrentBackend, registerOwnKernels, unregisterOwnKernels } from "./own_kernels.ts";
import { type MultiTensorKernel, runMultiTensor } from "./multi_tensor.ts";

/** Name of the running-statistics op (registered for webgpu by `register.ts`). */
export const RUNNING_STATS_KERNEL = "RegnetBnRunningStats";

/** Attributes of {@link RUNNING_STATS_KERNEL}. */
export interface RunningStatsAttrs {
  /** PyTorch's BatchNorm momentum (weight of the batch statistic). */
  momentum: number;
  /** Factor of the batch variance before averaging (`n / (n - 1)`, or 1). */
  correction: number;
}

/** Calls of the kernel since {@link resetRunningStatsStats}: proof it ran. */
export const runningStatsStats: { calls: number } = { calls: 0 };

/** Zeroes {@link runningStatsStats}. */
export function resetRunningStatsStats(): void {
  runningStatsStats.calls = 0;
  runningStatsInPlaceStats.calls = 0;
  runningStatsInPlaceStats.dispatches = 0;
}

/** `result = alpha · a + beta · b`, elementwise over `[C]`. */
class WeightedSumProgram implements WebGPUProgram {
  variableNames = ["a", "b"];
  outputShape: number[];
  shaderKey = "regnet_bn_running_stats";
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;
  uniforms = "alpha : f32, beta : f32,";

  constructor(size: number) {
    this.outputShape = [size];
    this.dispatchLayout = { x: [0] };
    this.dispatch = [Math.ceil(size / 64), 1, 1];
  }

  getUserCode(): string {
    // Two products rounded apart, then the sum: what the tf-ops path computes.
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let p = a[index] * uniforms.alpha;
          let q = b[index] * uniforms.beta;
          setOutputAtIndex(index, p + q);
        }
      }`;
  }
}

/**
 * Runs the op on the webgpu backend: two dispatches.
 *
 * @param backend the tfjs webgpu backend
 * @param inputs the running and the batch statistics (`[C]` each)
 * @param attrs momentum and variance correction
 * @returns `[mean, variance]`
 */
export function runRunningStats(
  backend: WebGPUBackend,
  inputs: {
    runningMean: tf.TensorInfo;
    runningVar: tf.TensorInfo;
    batchMean: tf.TensorInfo;
    batchVar: tf.TensorInfo;
  },
  attrs: RunningStatsAttrs,
): tf.TensorInfo[] {
  const { runningMean, runningVar, batchMean, batchVar } = inputs;
  for (const t of [runningMean, runningVar, batchMean, batchVar]) {
    if (t.dtype !== "float32") throw new Error(`${RUNNING_STATS_KERNEL}: float32 tensors only`);
  }
  const size = tf.util.sizeFromShape(runningMean.shape);
  runningStatsStats.calls++;
  const keep = 1 - attrs.momentum;
  const run = (a: tf.TensorInfo, b: tf.TensorInfo, beta: number) =>
    backend.runWebGPUProgram(new WeightedSumProgram(size), [a, b], "float32", [
      { type: "float32", data: [keep] },
      { type: "float32", data: [beta] },
    ]);
  return [
    run(runningMean, batchMean, attrs.momentum),
    run(runningVar, batchVar, attrs.correction * attrs.momentum),
  ];
}

/** One layer's running statistics (variables, updated in place) and its batch statistics. */
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
  attrs: RunningStatsAttrs;
  /** The layer's batch counter (`num_batches_tracked`, a float32 scalar): one is added. */
  count?: tf.Variable;
}

/** Items `[runningMean, runningVar, batchMean, batchVar]`, `p = (1 - m, m, correction · m)`. */
const IN_PLACE: MultiTensorKernel = {
  name: "regnet_bn_running_stats_inplace",
  accesses: ["read_write", "read_write", "read", "read"],
  body: (t, type) =>
    `let a : ${type} = ${t(0)}[i] * p.x;
     let b : ${type} = ${t(2)}[i] * p.y;
     ${t(0)}[i] = a + b;
     let c : ${type} = ${t(1)}[i] * p.x;
     let d : ${type} = ${t(3)}[i] * p.z;
     ${t(1)}[i] = c + d;`,
};

/** Items `[counter]`: one more batch. */
const COUNT: MultiTensorKernel = {
  name: "regnet_bn_count_inplace",
  accesses: ["read_write"],
  body: (t) => `${t(0)}[i] = ${t(0)}[i] + 1.0;`,
};

/** Dispatches of {@link runningStatsInPlace} since {@link resetRunningStatsStats}. */
export const runningStatsInPlaceStats: { calls: number; dispatches: number } = {
  calls: 0,
  dispatches: 0,
};

/**
 * Updates the running statistics of many layers at once, in place (the variables keep their
 * buffers), with the arithmetic of {@link RUNNING_STATS_KERNEL}, and adds one to the batch
 * counters given (one more small dispatch). Only where that kernel is
 * registered for the current backend and it is webgpu; returns false (and does nothing)
 * elsewhere, so the caller uses the op per layer.
 *
 * @param slots the layers' statistics
 * @returns true when the update was recorded
 * @example
 * ```ts
 * import { runningStatsInPlace } from "./running_stats.ts";
 * console.log(runningStatsInPlace([])); // false unless on webgpu with the kernel
 * ```
 */
export function runningStatsInPlace(slots: readonly RunningStatsSlot[]): boolean {
  if (tf.getBackend() !== "webgpu" || !runningStatsAvailable()) return false;
  const counts = slots.flatMap((s) => s.count ? [s.count] : []);
  const all = [
    ...slots.flatMap((s) => [s.runningMean, s.runningVar, s.batchMean, s.batchVar]),
    ...counts,
  ];
  if (all.some((t) => t.dtype !== "float32")) return false;
  const backend = tf.backend() as WebGPUBackend;
  for (const v of [...slots.flatMap((s) => [s.runningMean, s.runningVar]), ...counts]) {
    ownForWrite(backend, v);
  }
  runningStatsInPlaceStats.calls++;
  runningStatsInPlaceStats.dispatches += runMultiTensor(
    backend,
    IN_PLACE,
    slots.map((s) => {
      const m = s.attrs.momentum;
      return {
        tensors: [s.runningMean, s.runningVar, s.batchMean, s.batchVar],
        params: [1 - m, m, s.attrs.correction * m],
      };
    }),
  );
  if (counts.length > 0) {
    runningStatsInPlaceStats.dispatches += runMultiTensor(
      backend,
      COUNT,
      counts.map((c) => ({ tensors: [c], params: [] })),
    );
  }
  return true;
}

/**
 * Registers {@link RUNNING_STATS_KERNEL} for the webgpu backend. Idempotent.
 * (`registerFastKernels` in `register.ts` calls it.)
 *
 * @example
 * ```ts
 * import { registerRunningStatsKernel, unregisterRunningStatsKernel } from "./running_stats.ts";
 * registerRunningStatsKernel();
 * unregisterRunningStatsKernel();
 * ```
 */
export function registerRunningStatsKernel(): void {
  const kernelFunc: tf.KernelFunc = (args) =>
    runRunningStats(
      args.backend as WebGPUBackend,
      args.inputs as Parameters<typeof runRunningStats>[1],
      args.attrs as unknown as RunningStatsAttrs,
    );
  registerOwnKernels([[RUNNING_STATS_KERNEL, kernelFunc]]);
}

/**
 * Removes the kernel {@link registerRunningStatsKernel} registered. Idempotent.
 *
 * @example
 * ```ts
 * import { unregisterRunningStatsKernel } from "./running_stats.ts";
 * unregisterRunningStatsKernel();
 * ```
 */
export function unregisterRunningStatsKernel(): void {
  unregisterOwnKernels([RUNNING_STATS_KERNEL]);
}

/**
 * Whether the op can run on the current backend (its kernel is registered there).
 *
 * @returns true when {@link RUNNING_STATS_KERNEL} has a kernel for `tf.getBackend()`
 * @example
 * ```ts
 * import { runningStatsAvailable } from "./running_stats.ts";
 * console.log(typeof runningStatsAvailable()); // "boolean"
 * ```
 */
export function runningStatsAvailable(): boolean {
  return kernelOnCurrentBackend(RUNNING_STATS_KERNEL);
}

/**
 * The op: the new running mean and variance (see the module doc). Needs a backend with the
 * kernel ({@link runningStatsAvailable}).
 *
 * @param running the running mean and variance (`[C]`)
 * @param batch the batch mean and biased variance (`[C]`)
 * @param attrs momentum and variance correction
 * @returns the new mean and variance
 * @example
 * ```ts ignore
 * const { mean, variance } = runningStats({ mean: rm, variance: rv }, { mean: m, variance: v },
 *   { momentum: 0.1, correction: n / (n - 1) });
 * ```
 */
export function runningStats(
  running: { mean: tf.Tensor1D; variance: tf.Tensor1D },
  batch: { mean: tf.Tensor1D; variance: tf.Tensor1D },
  attrs: RunningStatsAttrs,
): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const [mean, variance] = tf.engine().runKernel(
    RUNNING_STATS_KERNEL,
    {
      runningMean: running.mean,
      runningVar: running.variance,
      batchMean: batch.mean,
      batchVar: batch.variance,
    },
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor1D[];
  return { mean, variance };
}
