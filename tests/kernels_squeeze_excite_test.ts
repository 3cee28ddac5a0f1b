import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { countDispatches, counters } from "../webgpu/runtime/counters.ts";
import { gpuErrors, hasAdapter, relErr } from "./support/gpu.ts";
import { Rng } from "../util/rng.ts";
import { SQUEEZE_EXCITE, SQUEEZE_EXCITE_GRAD, squeezeExcitation } from "../ops/squeeze_excite.ts";
import { kernelOnCurrentBackend } from "../ops/support.ts";
import { SQUEEZE_EXCITE_KERNELS } from "../webgpu/kernels/squeeze_excite.ts";
import { registerKernels, unregisterKernels } from "../webgpu/kernels/registry.ts";
import { defaultPolicies, registerFastKernels, unregisterFastKernels } from "../webgpu/install.ts";

/** The squeeze-excite kernels alone (the rest of the WebGPU layer as it is). */
const registerSqueezeExciteKernels = () =>
  registerKernels(SQUEEZE_EXCITE_KERNELS, defaultPolicies("gpu"));
const unregisterSqueezeExciteKernels = () => unregisterKernels(SQUEEZE_EXCITE_KERNELS);
const squeezeExciteAvailable = () => kernelOnCurrentBackend(SQUEEZE_EXCITE);
const resetSqueezeExciteStats = () => counters.reset("squeezeExcite");
const squeezeExciteStats = () => counters.read("squeezeExcite");

/** `[N, H, W, C]` and the squeezed channels `S`. */
type Case = { shape: [number, number, number, number]; s: number; pixelLanes?: boolean };

const CASES: Case[] = [
  { shape: [3, 5, 7, 13], s: 5 }, // nothing in fours: scalar lanes
  { shape: [2, 4, 4, 64], s: 16 }, // vec4 lanes
  { shape: [3, 3, 5, 12], s: 7 }, // vec4 lanes, S divides nothing
  { shape: [2, 3, 3, 132], s: 67 }, // more channels (and S) than invocations per workgroup
  // More than 256 pixels: pooled by many pixel lanes (vec4, then scalar lanes). The ReLU-mask
  // check of the small cases is left out for them: with means over hundreds of pixels the
  // mask need not mix.
  { shape: [2, 17, 19, 12], s: 3, pixelLanes: true },
  { shape: [3, 18, 15, 7], s: 6, pixelLanes: true },
];

const NAMES = ["y", "dx", "dw1", "db1", "dw2", "db2"];

interface Data {
  c: Case;
  x: Float32Array;
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
  dy: Float32Array;
}

function makeData(c: Case, seed: number): Data {
  const rng = new Rng(seed);
  const [n, h, w, ch] = c.shape;
  const fill = (len: number, scale: number) =>
    Float32Array.from({ length: len }, () => scale * (2 * rng.next() - 1));
  // Biases around zero so that some hidden units are cut by the ReLU and others are not.
  return {
    c,
    x: fill(n * h * w * ch, 2),
    w1: fill(ch * c.s, 1),
    b1: fill(c.s, 0.5),
    w2: fill(c.s * ch, 1),
    b2: fill(ch, 0.5),
    dy: fill(n * h * w * ch, 1),
  };
}

/** `squeezeExcitation` on the current backend: y, then the gradients of `Σ y·dy`. */
async function runSe(d: Data): Promise<Float32Array[]> {
  const [, , , ch] = d.c.shape, s = d.c.s;
  const x = tf.tensor4d(d.x, d.c.shape);
  const w1 = tf.tensor2d(d.w1, [ch, s]), b1 = tf.tensor1d(d.b1);
  const w2 = tf.tensor2d(d.w2, [s, ch]), b2 = tf.tensor1d(d.b2);
  const dy = tf.tensor4d(d.dy, d.c.shape);
  const forward = (a: tf.Tensor, p: tf.Tensor, q: tf.Tensor, r: tf.Tensor, t: tf.Tensor) =>
    squeezeExcitation(a as tf.Tensor4D, {
      w1: p as tf.Tensor2D,
      b1: q as tf.Tensor1D,
      w2: r as tf.Tensor2D,
      b2: t as tf.Tensor1D,
    });
  const y = tf.tidy(() => forward(x, w1, b1, w2, b2));
  const grads = tf.grads(forward)([x, w1, b1, w2, b2], dy);
  const all = [y, ...grads];
  const result: Float32Array[] = [];
  for (const t of all) result.push(await t.data() as Float32Array);
  tf.dispose([x, w1, b1, w2, b2, dy, ...all]);
  return result;
}

Deno.test({
  name: "squeeze-excite op: forward and all five gradients equal the tf-ops path on webgpu " +
    "and on cpu",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const errors = gpuErrors();
    try {
      for (const [i, c] of CASES.entries()) {
        const data = makeData(c, 40 + i);
        registerSqueezeExciteKernels();
        resetSqueezeExciteStats();
        const fused = await runSe(data);
        // One forward for y, one inside tf.grads; one backward.
        assert.deepEqual(squeezeExciteStats(), { forward: 2, backward: 1 });
        unregisterSqueezeExciteKernels();
        const webgpu = await runSe(data);
        assert.equal(squeezeExciteStats().forward, 2, "the tf-ops path must not use the kernel");
        await tf.setBackend("cpu");
        const cpu = await runSe(data);
        await tf.setBackend("webgpu");
        for (const [k, name] of NAMES.entries()) {
          const what = `${c.shape} S=${c.s} ${name}`;
          assert.ok(fused[k].every(Number.isFinite), `${what}: finite`);
          const e1 = relErr(fused[k], webgpu[k]), e2 = relErr(fused[k], cpu[k]);
          assert.ok(e1 <= 1e-5, `${what} vs webgpu tf-ops: ${e1}`);
          assert.ok(e2 <= 1e-5, `${what} vs cpu tf-ops: ${e2}`);
        }
        // The ReLU cut some hidden units and not others (both branches of its gradient ran).
        const db1 = fused[3];
        if (!c.pixelLanes) {
          assert.ok(db1.some((v) => v === 0) && db1.some((v) => v !== 0), `${c.shape}: ReLU mask`);
        }
      }
      assert.deepEqual(errors, []);
    } finally {
      unregisterSqueezeExciteKernels();
      await tf.setBackend("webgpu");
    }
  },
});

Deno.test({
  name: "squeeze-excite op: 7 dispatches per forward + backward, deterministic, no leaks, " +
    "registered by installWebGpu, absent on cpu",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    try {
      const c: Case = { shape: [4, 6, 6, 24], s: 6 };
      const data = makeData(c, 7);
      const [, , , ch] = c.shape;
      const x = tf.tensor4d(data.x, c.shape), dy = tf.tensor4d(data.dy, c.shape);
      const w1 = tf.tensor2d(data.w1, [ch, c.s]), b1 = tf.tensor1d(data.b1);
      const w2 = tf.tensor2d(data.w2, [c.s, ch]), b2 = tf.tensor1d(data.b2);
      let last: Float32Array[] = [];
      const step = async () => {
        const grads = tf.grads((
          a: tf.Tensor,
          p: tf.Tensor,
          q: tf.Tensor,
          r: tf.Tensor,
          t: tf.Tensor,
        ) =>
          squeezeExcitation(a as tf.Tensor4D, {
            w1: p as tf.Tensor2D,
            b1: q as tf.Tensor1D,
            w2: r as tf.Tensor2D,
            b2: t as tf.Tensor1D,
          })
        )([x, w1, b1, w2, b2], dy);
        last = [];
        for (const t of grads) last.push(await t.data() as Float32Array);
        tf.dispose(grads);
      };
      unregisterFastKernels();
      assert.ok(!squeezeExciteAvailable());
      await step(); // compile
      const stock = await countDispatches(step);
      registerFastKernels();
      assert.ok(squeezeExciteAvailable());
      await step(); // compile
      const first = last;
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const tensors = tf.memory().numTensors, dataIds = backend.numDataIds();
      resetSqueezeExciteStats();
      const fused = await countDispatches(step);
      assert.deepEqual(squeezeExciteStats(), { forward: 1, backward: 1 });
      assert.equal(fused, 7);
      assert.ok(stock >= 3 * fused, `tf-ops path: ${stock} dispatches, fused: ${fused}`);
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(backend.numDataIds(), dataIds);
      // No atomics: a second run gives the same bits.
      for (const [k, a] of last.entries()) assert.deepEqual(a, first[k], `grad ${k} repeats`);
      unregisterFastKernels();
      assert.equal(tf.getKernel(SQUEEZE_EXCITE, "webgpu"), undefined);
      assert.equal(tf.getKernel(SQUEEZE_EXCITE_GRAD, "webgpu"), undefined);
      tf.dispose([x, dy, w1, b1, w2, b2]);
      await tf.setBackend("cpu");
      registerFastKernels();
      assert.ok(!squeezeExciteAvailable(), "no fused kernel on the cpu backend");
    } finally {
      unregisterFastKernels();
      await tf.setBackend("webgpu");
    }
  },
});
