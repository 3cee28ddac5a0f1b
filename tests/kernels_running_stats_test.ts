import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { hasAdapter, relErr } from "./support/gpu.ts";
import { Rng } from "../util/rng.ts";
import { runningStatsUpdate, runningStatsUpdateInPlace } from "../models/ops.ts";
import { countDispatches } from "../kernels/counters.ts";
import { MAX_ITEMS_PER_DISPATCH } from "../kernels/multi_tensor.ts";
import {
  registerRunningStatsKernel,
  resetRunningStatsStats,
  RUNNING_STATS_KERNEL,
  runningStatsAvailable,
  runningStatsInPlaceStats,
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

Deno.test({
  name: "running-stats kernel: many layers at once in place, equal to the op per layer",
  ignore: !hasAdapter,
  async fn() {
    try {
      await initBackend({ log: null });
      const rng = new Rng(5);
      const fill = (c: number, lo: number, hi: number) =>
        tf.tensor1d(Float32Array.from({ length: c }, () => lo + (hi - lo) * rng.next()));
      const channels = [1, 3, 16, 17, 64, 70, 440, 5, 8, 12, 32, 2, 7, 9, 100, 4, 6, 33, 48, 24];
      const layers = channels.map((c, i) => ({
        rm: fill(c, -2, 2),
        rv: fill(c, 0.1, 3),
        stats: { mean: fill(c, -5, 5), variance: fill(c, 0, 4), count: 1 + i * 37 },
        momentum: i % 3 === 0 ? 0.1 : 0.01 * (i + 1),
      }));
      // The reference: the op, layer by layer.
      const want: Float32Array[][] = [];
      for (const l of layers) {
        const out = runningStatsUpdate(l.rm, l.rv, l.stats, l.momentum);
        want.push([await out.mean.data(), await out.variance.data()] as Float32Array[]);
        tf.dispose([out.mean, out.variance]);
      }
      const keptInit = layers[0].rm; // stays alive: the variable made from it shares its data
      const items = layers.map((l, i) => ({
        runningMean: i === 0 ? tf.variable(l.rm, false) : tf.tidy(() => tf.variable(l.rm.mul(1))),
        runningVar: tf.tidy(() => tf.variable(l.rv.mul(1), false)),
        stats: l.stats,
        momentum: l.momentum,
      }));
      await items[3].runningMean.data(); // a CPU copy the in-place write must not leave stale
      const ids = items.map((it) => it.runningVar.dataId);
      resetRunningStatsStats();
      const n = await countDispatches(() => assert.ok(runningStatsUpdateInPlace(items)));
      const limit = (tf.backend() as unknown as { device: GPUDevice }).device.limits
        .maxStorageBuffersPerShaderStage;
      const per = Math.min(MAX_ITEMS_PER_DISPATCH, Math.floor(limit / 4));
      assert.equal(n, Math.ceil(channels.length / per), `${n} dispatches`);
      assert.equal(runningStatsInPlaceStats.dispatches, n);
      for (const [i, it] of items.entries()) {
        assert.equal(it.runningVar.dataId, ids[i], "updated in place");
        const got = [await it.runningMean.data(), await it.runningVar.data()] as Float32Array[];
        for (const k of [0, 1]) {
          assert.ok(relErr(got[k], want[i][k]) <= 1e-6, `layer ${i} stat ${k}`);
        }
      }
      const init = await keptInit.data();
      assert.ok(relErr(init, await layers[0].rm.data()) === 0);
      assert.notDeepEqual([...init], [...want[0][0]], "the shared initial tensor is untouched");
      tf.dispose(items.flatMap((it) => [it.runningMean, it.runningVar]));
      tf.dispose(layers.flatMap((l) => [l.rm, l.rv, l.stats.mean, l.stats.variance]));
    } finally {
      await initBackend({ backend: "cpu", log: null });
    }
  },
});
