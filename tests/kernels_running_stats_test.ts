import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { hasAdapter, relErr } from "./support/gpu.ts";
import { Rng } from "../util/rng.ts";
import { runningStatsUpdate } from "../models/ops.ts";
import {
  registerRunningStatsKernel,
  resetRunningStatsStats,
  RUNNING_STATS_KERNEL,
  runningStatsAvailable,
  runningStatsStats,
  unregisterRunningStatsKernel,
} from "../kernels/running_stats.ts";
import { registerFastKernels, unregisterFastKernels } from "../kernels/register.ts";

/** `runningStatsUpdate` on the current backend, for `c` channels of seeded data. */
async function update(c: number, count: number, momentum: number, seed: number) {
  const rng = new Rng(seed);
  const fill = (lo: number, hi: number) =>
    tf.tensor1d(Float32Array.from({ length: c }, () => lo + (hi - lo) * rng.next()));
  const rm = fill(-2, 2), rv = fill(0.1, 3), bm = fill(-5, 5), bv = fill(0, 4);
  const out = runningStatsUpdate(rm, rv, { mean: bm, variance: bv, count }, momentum);
  const values = [await out.mean.data(), await out.variance.data()] as Float32Array[];
  tf.dispose([rm, rv, bm, bv, out.mean, out.variance]);
  return values;
}

Deno.test({
  name: "running-stats kernel: equals the tf-ops path on webgpu and cpu, two dispatches",
  ignore: !hasAdapter,
  async fn() {
    try {
      // Odd channel counts, a one-value batch (no correction), PyTorch's and other momenta.
      const cases: [number, number, number][] = [[1, 1, 0.1], [3, 2, 0.1], [17, 4096, 0.1], [
        70,
        9,
        0.3,
      ], [440, 64, 0.01]];
      for (const [i, [c, count, momentum]] of cases.entries()) {
        const label = `C=${c} n=${count} m=${momentum}`;
        await initBackend({ log: null, fastKernels: false });
        registerRunningStatsKernel();
        assert.ok(runningStatsAvailable());
        resetRunningStatsStats();
        const be = tf.backend() as unknown as { runWebGPUProgram: (...a: unknown[]) => unknown };
        const original = be.runWebGPUProgram;
        let dispatches = 0;
        be.runWebGPUProgram = function (this: unknown, ...args: unknown[]) {
          dispatches++;
          return original.apply(this, args);
        };
        let fused: Float32Array[];
        try {
          fused = await update(c, count, momentum, i);
        } finally {
          be.runWebGPUProgram = original;
        }
        assert.equal(runningStatsStats.calls, 1, `kernel not used for ${label}`);
        assert.equal(dispatches, 2, `${label}: ${dispatches} dispatches`);
        unregisterRunningStatsKernel();
        assert.ok(!runningStatsAvailable());
        const ops = await update(c, count, momentum, i);
        assert.equal(runningStatsStats.calls, 1, "the tf-ops path must not use the kernel");
        await initBackend({ backend: "cpu", log: null });
        const cpu = await update(c, count, momentum, i);
        for (const k of [0, 1]) {
          const what = `${label} ${k === 0 ? "mean" : "variance"}`;
          assert.ok(relErr(fused[k], ops[k]) <= 1e-6, `${what} vs webgpu tf-ops`);
          assert.ok(relErr(fused[k], cpu[k]) <= 1e-6, `${what} vs cpu tf-ops`);
        }
      }
    } finally {
      unregisterRunningStatsKernel();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

Deno.test({
  name: "running-stats kernel: registered by registerFastKernels, webgpu only",
  ignore: !hasAdapter,
  async fn() {
    try {
      await initBackend({ log: null });
      assert.notEqual(tf.getKernel(RUNNING_STATS_KERNEL, "webgpu"), undefined);
      unregisterFastKernels();
      assert.equal(tf.getKernel(RUNNING_STATS_KERNEL, "webgpu"), undefined);
      await initBackend({ backend: "cpu", log: null });
      registerFastKernels();
      assert.ok(!runningStatsAvailable(), "no kernel on the cpu backend");
    } finally {
      unregisterFastKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});
