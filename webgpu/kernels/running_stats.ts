/**
 * BatchNorm's running averages of every layer of a model at once, in place, as a multi-tensor
 * kernel (a ResNet20's 21 layers: one dispatch at 64 storage buffers per dispatch, where the
 * tf ops take six per layer):
 *
 * - `mean' = (1 - momentum) · runningMean + momentum · batchMean`
 * - `var'  = (1 - momentum) · runningVar + (correction · momentum) · batchVar`
 *
 * with `correction` the unbiased-variance factor `n / (n - 1)`, the factors rounded to float32
 * as the tf-ops path rounds its scalars; and one more small dispatch that adds one to the
 * layers' batch counters. `installWebGpu` provides it as the `runningStats` extension of
 * `ops/extensions.ts`, which `ops/batchnorm.ts`'s `runningStatsUpdateInPlace` calls.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../../deps.ts";
import type { RunningStatsSlot } from "../../ops/batchnorm.ts";
import { ownForWrite } from "../runtime/direct.ts";
import { counters } from "../runtime/counters.ts";
import { type MultiTensorKernel, runMultiTensor } from "./multi_tensor.ts";

/** Items `[runningMean, runningVar, batchMean, batchVar]`, `p = (1 - m, m, correction · m)`. */
const RUNNING_STATS_KERNEL: MultiTensorKernel = {
  name: "bn_running_stats_inplace",
  accesses: () => ["read_write", "read_write", "read", "read"],
  body: (_, t, type) =>
    `let a : ${type} = ${t(0)}[i] * p.x;
     let b : ${type} = ${t(2)}[i] * p.y;
     ${t(0)}[i] = a + b;
     let c : ${type} = ${t(1)}[i] * p.x;
     let d : ${type} = ${t(3)}[i] * p.z;
     ${t(1)}[i] = c + d;`,
};

/** Items `[counter]`: one more batch. */
export const BATCH_COUNT_KERNEL: MultiTensorKernel = {
  name: "bn_count_inplace",
  accesses: () => ["read_write"],
  body: (_, t) => `${t(0)}[i] = ${t(0)}[i] + 1.0;`,
};

/** Calls and dispatches (the `runningStats` counter group). */
const stats = counters.group("runningStats", { calls: 0, dispatches: 0 });

/**
 * Updates the running statistics of many layers at once, in place (the variables keep their
 * buffers), and adds one to the batch counters given. Returns false (and does nothing) when a
 * tensor is not float32, so that the caller uses tf ops.
 *
 * @param slots the layers' statistics
 * @returns true when the update was encoded
 */
export function runningStatsInPlace(slots: readonly RunningStatsSlot[]): boolean {
  const backend = tf.backend() as WebGPUBackend;
  const counts = slots.flatMap((s) => s.count ? [s.count] : []);
  const all = [
    ...slots.flatMap((s) => [s.runningMean, s.runningVar, s.batchMean, s.batchVar]),
    ...counts,
  ];
  if (all.some((t) => t.dtype !== "float32")) return false;
  for (const v of [...slots.flatMap((s) => [s.runningMean, s.runningVar]), ...counts]) {
    ownForWrite(backend, v);
  }
  stats.calls++;
  stats.dispatches += runMultiTensor(
    backend,
    RUNNING_STATS_KERNEL,
    {},
    slots.map((s) => {
      const m = s.attrs.momentum;
      return {
        tensors: [s.runningMean, s.runningVar, s.batchMean, s.batchVar],
        params: [1 - m, m, s.attrs.correction * m],
      };
    }),
  );
  if (counts.length > 0) {
    stats.dispatches += runMultiTensor(
      backend,
      BATCH_COUNT_KERNEL,
      {},
      counts.map((c) => ({ tensors: [c], params: [] as number[] })),
    );
  }
  return true;
}
