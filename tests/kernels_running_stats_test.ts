import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { hasAdapter, relErr } from "./support/gpu.ts";
import { Rng } from "../util/rng.ts";
import {
  inPlaceRunningStatsAvailable,
  runningStatsUpdate,
  runningStatsUpdateInPlace,
} from "../ops/batchnorm.ts";
import { countDispatches } from "../webgpu/runtime/counters.ts";
import { MAX_ITEMS_PER_DISPATCH } from "../webgpu/kernels/multi_tensor.ts";
import { registerFastKernels, unregisterFastKernels, webGpuInstall } from "../webgpu/install.ts";

Deno.test({
  name: "running-stats update: provided in place by installWebGpu, webgpu only",
  ignore: !hasAdapter,
  async fn() {
    try {
      await initBackend({ log: null });
      assert.ok(inPlaceRunningStatsAvailable());
      unregisterFastKernels();
      assert.ok(!inPlaceRunningStatsAvailable());
      assert.equal(runningStatsUpdateInPlace([]), false, "nothing done without the extension");
      await initBackend({ backend: "cpu", log: null });
      registerFastKernels();
      assert.ok(!inPlaceRunningStatsAvailable(), "no in-place update on the cpu backend");
    } finally {
      unregisterFastKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

Deno.test({
  name: "running-stats kernel: many layers at once in place, equal to the tf ops per layer",
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
      // The reference: tf ops, layer by layer.
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
      const counters = webGpuInstall()!.counters;
      counters.reset("runningStats");
      const n = await countDispatches(() => assert.ok(runningStatsUpdateInPlace(items)));
      const limit = (tf.backend() as unknown as { device: GPUDevice }).device.limits
        .maxStorageBuffersPerShaderStage;
      const per = Math.min(MAX_ITEMS_PER_DISPATCH, Math.floor(limit / 4));
      assert.equal(n, Math.ceil(channels.length / per), `${n} dispatches`);
      assert.equal(counters.read("runningStats").dispatches, n);
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
