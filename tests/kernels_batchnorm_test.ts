import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { countDispatches, counters } from "../webgpu/runtime/counters.ts";
import { gpuErrors, hasAdapter, lagSubmits, relErr } from "./support/gpu.ts";
import { Rng } from "../util/rng.ts";
import { batchNormTraining, FUSED_BATCH_NORM, FUSED_BATCH_NORM_GRAD } from "../ops/batchnorm.ts";
import { kernelOnCurrentBackend } from "../ops/support.ts";
import { BATCH_NORM_KERNELS, planBatchNorm } from "../webgpu/kernels/batchnorm.ts";
import { registerKernels, unregisterKernels } from "../webgpu/kernels/registry.ts";
import { defaultPolicies, registerFastKernels, unregisterFastKernels } from "../webgpu/install.ts";

/** The fused kernels alone (the rest of the WebGPU layer as it is). */
const registerBatchNormKernels = () => registerKernels(BATCH_NORM_KERNELS, defaultPolicies("gpu"));
const unregisterBatchNormKernels = () => unregisterKernels(BATCH_NORM_KERNELS);
const fusedBatchNormAvailable = () => kernelOnCurrentBackend(FUSED_BATCH_NORM);
const resetFusedBatchNormStats = () => {
  counters.reset("fusedBatchNorm");
  counters.reset("fusedBatchNormLanes");
};
const fusedBatchNormStats = () => counters.read("fusedBatchNorm");
const fusedBatchNormLaneStats = () => counters.read("fusedBatchNormLanes");

const EPS = 1e-5;

type Activation = "linear" | "relu";
type Shape4 = [number, number, number, number];

/** One batch: input, parameters, and the upstream gradients of y, mean and variance. */
interface Data {
  shape: Shape4;
  x: Float32Array;
  gamma: Float32Array;
  beta: Float32Array;
  dy: Float32Array;
  dmean: Float32Array;
  dvar: Float32Array;
}

function normal(rng: Rng): number {
  const u = Math.max(rng.next(), 1e-12), v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function makeData(shape: Shape4, seed: number, mean: number, std: number): Data {
  const rng = new Rng(seed);
  const c = shape[3], size = shape.reduce((a, b) => a * b, 1);
  const fill = (n: number, f: () => number) => Float32Array.from({ length: n }, f);
  // Per-channel offsets so that channels differ, around the requested mean.
  const offsets = fill(c, () => mean + std * normal(rng));
  return {
    shape,
    x: fill(size, () => 0).map((_, i) => offsets[i % c] + std * normal(rng)),
    gamma: fill(c, () => 0.5 + rng.next()),
    beta: fill(c, () => normal(rng)),
    dy: fill(size, () => normal(rng)),
    dmean: fill(c, () => normal(rng)),
    dvar: fill(c, () => normal(rng)),
  };
}

/**
 * `batchNormTraining` on the current backend: y, mean, variance, then the gradients of
 * `Σ y·dy + Σ mean·dmean + Σ variance·dvar` for x, gamma, beta.
 */
async function runBn(d: Data, activation: Activation): Promise<Float32Array[]> {
  const x = tf.tensor4d(d.x, d.shape);
  const gamma = tf.tensor1d(d.gamma), beta = tf.tensor1d(d.beta);
  const dy = tf.tensor4d(d.dy, d.shape);
  const dmean = tf.tensor1d(d.dmean), dvar = tf.tensor1d(d.dvar);
  const forward = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
    batchNormTraining(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, EPS, { activation });
  const outs = tf.tidy(() => {
    const { y, stats } = forward(x, gamma, beta);
    return [y, stats.mean, stats.variance];
  });
  const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    const { y, stats } = forward(a, g, b);
    return y.mul(dy).sum().add(stats.mean.mul(dmean).sum()).add(stats.variance.mul(dvar).sum());
  })([x, gamma, beta]);
  const all = [...outs, ...grads];
  const result: Float32Array[] = [];
  for (const t of all) result.push(await t.data() as Float32Array);
  tf.dispose([x, gamma, beta, dy, dmean, dvar, ...all]);
  return result;
}

/**
 * The same quantities in float64, from the definitions; after ReLU, `y32` (the f32 output under
 * test) decides which units pass the gradient, as the pre-activation's sign may round either
 * way. Also returns the scale of the terms that cancel in `dx` (`γ/σ · |dy|`), and of those that
 * cancel in tfjs's own batch norm on webgpu, which computes `y` as one dot product
 * `x·inv - mean·inv + β` (`inv = γ/σ`).
 */
function referenceF64(
  d: Data,
  activation: Activation,
  y32?: Float32Array,
): { values: Float64Array[]; dxScale: number; yScale: number } {
  const c = d.shape[3], size = d.x.length, m = size / c;
  const mean = new Float64Array(c), variance = new Float64Array(c);
  for (let i = 0; i < size; i++) mean[i % c] += d.x[i] / m;
  for (let i = 0; i < size; i++) variance[i % c] += (d.x[i] - mean[i % c]) ** 2 / m;
  const invstd = Float64Array.from(variance, (v) => 1 / Math.sqrt(v + EPS));
  const y = new Float64Array(size), g = new Float64Array(size);
  const dgamma = new Float64Array(c), dbeta = new Float64Array(c);
  let yScale = 0;
  for (let i = 0; i < size; i++) {
    const k = i % c, xhat = (d.x[i] - mean[k]) * invstd[k];
    const inv = Math.abs(d.gamma[k] * invstd[k]);
    yScale = Math.max(yScale, inv * Math.abs(d.x[i]), inv * Math.abs(mean[k]));
    const z = xhat * d.gamma[k] + d.beta[k];
    y[i] = activation === "relu" ? Math.max(z, 0) : z;
    const off = activation === "relu" && (y32 ? y32[i] <= 0 : z <= 0);
    g[i] = off ? 0 : d.dy[i];
    dbeta[k] += g[i];
    dgamma[k] += g[i] * xhat;
  }
  const dx = new Float64Array(size);
  let dxScale = 0;
  for (let i = 0; i < size; i++) {
    const k = i % c, xc = d.x[i] - mean[k], xhat = xc * invstd[k];
    dx[i] = d.gamma[k] * invstd[k] * (g[i] - dbeta[k] / m - xhat * dgamma[k] / m) +
      d.dmean[k] / m + 2 * d.dvar[k] * xc / m;
    dxScale = Math.max(dxScale, Math.abs(d.gamma[k] * invstd[k] * d.dy[i]), Math.abs(dx[i]));
  }
  return { values: [y, mean, variance, dx, dgamma, dbeta], dxScale, yScale };
}

const NAMES = ["y", "mean", "variance", "dx", "dgamma", "dbeta"];

/** Odd shapes, every channel count of the brief, and sizes that take several chunks. */
const CASES: Shape4[] = [
  [1, 3, 5, 1],
  [2, 5, 3, 3],
  [3, 7, 7, 17],
  [5, 3, 5, 64],
  [4, 5, 7, 440],
  [1, 1, 1, 3],
  [5, 17, 19, 64],
  [2, 33, 31, 3],
];

Deno.test({
  name: "fused batch norm: forward and gradients equal the tf-ops path on webgpu and on cpu",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const errors = gpuErrors();
    try {
      for (const [i, shape] of CASES.entries()) {
        for (const activation of ["linear", "relu"] as Activation[]) {
          const data = makeData(shape, 100 + i, 0.5, 1.5);
          registerBatchNormKernels();
          resetFusedBatchNormStats();
          const fused = await runBn(data, activation);
          // One forward for the outputs, one inside tf.grads; one backward.
          assert.deepEqual(fusedBatchNormStats(), { forward: 2, backward: 1 });
          // Channels in fours are read as vec4 lanes, others one by one.
          const lanes = shape[3] % 4 === 0 ? "vec4" : "scalar";
          assert.equal(fusedBatchNormLaneStats()[lanes], 3, `${shape}: ${lanes} lanes`);
          unregisterBatchNormKernels();
          const webgpu = await runBn(data, activation);
          assert.equal(fusedBatchNormStats().forward, 2, "the tf-ops path must not use the kernel");
          await tf.setBackend("cpu");
          const cpu = await runBn(data, activation);
          await tf.setBackend("webgpu");
          // dx is a difference of terms of size γ/σ·|dy|: with one value per channel
          // (σ = 0, 1/σ = 316) its error is relative to those terms, not to the difference.
          const { dxScale, yScale } = referenceF64(data, activation, fused[0]);
          for (const [k, name] of NAMES.entries()) {
            const what = `${shape} ${activation} ${name}`;
            const scale = name === "dx" ? dxScale : 0;
            // tfjs's webgpu batch norm adds x·inv and -mean·inv (316·γx each with one value
            // per channel) to β in one dot product; a shader compiler may fuse it into FMAs
            // (Mesa's OpenGL driver does, its Vulkan driver does not), which leaves up to an
            // ulp of those terms: 3.4e-5 of β in the [1,1,1,3] case on OpenGL. Our kernel
            // subtracts the mean first, as tfjs's cpu kernel does, so y = β exactly there
            // (checked below against cpu, and to the bit in the lagging-GPU test).
            const gpuScale = name === "y" ? yScale : scale;
            // A device error drops whole submits and leaves stale outputs: name it first.
            assert.deepEqual(errors, [], `${what}: GPU errors`);
            const [eg, ec] = [
              relErr(fused[k], webgpu[k], gpuScale),
              relErr(fused[k], cpu[k], scale),
            ];
            assert.ok(eg <= 1e-5, `${what} vs webgpu tf-ops: ${eg}; ${diff(fused[k], webgpu[k])}`);
            assert.ok(ec <= 1e-5, `${what} vs cpu tf-ops: ${ec}; ${diff(fused[k], cpu[k])}`);
          }
        }
      }
    } finally {
      unregisterBatchNormKernels();
      unregisterFastKernels();
      await tf.setBackend("webgpu");
    }
  },
});

/** How `act(bn(x) + shortcut)` is computed: by the fused op, or by batch norm, `tf.add`, `tf.relu`. */
type ResidualMode = "fused" | "composed";

/**
 * `act(bn(x) + shortcut)` on the current backend: y, mean, variance, then the gradients of
 * `Σ y·dy + Σ mean·dmean + Σ variance·dvar` for x, gamma, beta and the shortcut.
 */
async function runResidual(
  d: Data,
  shortcut: Float32Array,
  activation: Activation,
  mode: ResidualMode,
): Promise<Float32Array[]> {
  const x = tf.tensor4d(d.x, d.shape), s = tf.tensor4d(shortcut, d.shape);
  const gamma = tf.tensor1d(d.gamma), beta = tf.tensor1d(d.beta);
  const dy = tf.tensor4d(d.dy, d.shape);
  const dmean = tf.tensor1d(d.dmean), dvar = tf.tensor1d(d.dvar);
  const forward = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, r: tf.Tensor) => {
    const [a4, g1, b1, r4] = [
      a as tf.Tensor4D,
      g as tf.Tensor1D,
      b as tf.Tensor1D,
      r as tf.Tensor4D,
    ];
    if (mode === "fused") return batchNormTraining(a4, g1, b1, EPS, { activation, shortcut: r4 });
    const { y, stats } = batchNormTraining(a4, g1, b1, EPS);
    const z = tf.add(y, r4);
    return { y: activation === "relu" ? tf.relu(z) : z, stats };
  };
  const outs = tf.tidy(() => {
    const { y, stats } = forward(x, gamma, beta, s);
    return [y, stats.mean, stats.variance];
  });
  const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, r: tf.Tensor) => {
    const { y, stats } = forward(a, g, b, r);
    return y.mul(dy).sum().add(stats.mean.mul(dmean).sum()).add(stats.variance.mul(dvar).sum());
  })([x, gamma, beta, s]);
  const all = [...outs, ...grads];
  const result: Float32Array[] = [];
  for (const t of all) result.push(await t.data() as Float32Array);
  tf.dispose([x, s, gamma, beta, dy, dmean, dvar, ...all]);
  return result;
}

const RESIDUAL_NAMES = [...NAMES, "dshortcut"];

/** The largest difference between `a` and `b`: where, and both values there. */
function diff(a: ArrayLike<number>, b: ArrayLike<number>): string {
  let at = 0;
  for (let i = 1; i < a.length; i++) {
    if (Math.abs(a[i] - b[i]) > Math.abs(a[at] - b[at])) at = i;
  }
  return `largest difference at ${at}: ${a[at]} vs ${b[at]}`;
}

/** Positions where `a[i] !== b[i]` (so +0 and -0 count as equal), at most 3. */
function mismatches(a: Float32Array, b: Float32Array): number[] {
  assert.equal(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < a.length && out.length < 3; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

/**
 * Asserts that the fused residual op's outputs (in `RESIDUAL_NAMES` order) are those of
 * `relu(add(bn(x), shortcut))` computed unfused. `y`, the statistics, `dgamma`, `dbeta` and
 * `dshortcut` (the masked `dy` itself) must be the same bits: the same f32 operations in the same
 * order, and the ReLU's mask decides `dshortcut` without arithmetic. `dx` comes out of two
 * different shaders (with and without the mask), which a shader compiler may contract into FMAs
 * differently: Mesa's OpenGL driver (Deno's WebGPU on wgpu's GL backend, where no Vulkan driver is
 * installed) differs by 1 to 1,536 ulp, at most 9.1e-8 of `dxScale`, the size of the terms that
 * cancel in `dx`; so `dx` is held to 1e-6 of them. A wrong mask moves `dx` by about `dxScale`.
 */
function assertSameAsComposed(
  fused: Float32Array[],
  composed: Float32Array[],
  dxScale: number,
  what: string,
): void {
  for (const [k, name] of RESIDUAL_NAMES.entries()) {
    if (name === "dx") {
      const err = relErr(fused[k], composed[k], dxScale);
      assert.ok(err <= 1e-6, `${what} dx: ${err}; ${diff(fused[k], composed[k])}`);
      continue;
    }
    const bad = mismatches(fused[k], composed[k]);
    assert.deepEqual(
      bad,
      [],
      `${what} ${name} at ${bad}: fused ${bad.map((j) => fused[k][j])}, composed ${
        bad.map((j) => composed[k][j])
      }, y ${bad.map((j) => `${fused[0][j]}/${composed[0][j]}`)}`,
    );
  }
}

Deno.test({
  name:
    "fused batch norm with a residual: the unfused add and ReLU's bits on webgpu (dx to 1e-6), " +
    "the tf-ops path on cpu",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const errors = gpuErrors();
    try {
      registerBatchNormKernels();
      for (const [i, shape] of CASES.entries()) {
        const data = makeData(shape, 300 + i, 0.5, 1.5);
        const rng = new Rng(400 + i);
        const shortcut = Float32Array.from(data.x, () => normal(rng));
        // A shortcut that cancels bn(x) exactly at every third value: the ReLU's input is 0
        // there, where the mask must agree with the unfused ReLU's gradient.
        const [bnLinear] = await runResidual(
          data,
          new Float32Array(data.x.length),
          "linear",
          "fused",
        );
        const cancelling = shortcut.map((v, k) => k % 3 === 0 ? -bnLinear[k] : v);
        const { dxScale } = referenceF64(data, "linear");
        for (const activation of ["linear", "relu"] as Activation[]) {
          for (const [what, s] of [["random", shortcut], ["cancelling", cancelling]] as const) {
            resetFusedBatchNormStats();
            const fused = await runResidual(data, s, activation, "fused");
            assert.deepEqual(fusedBatchNormStats(), { forward: 2, backward: 1 });
            const composed = await runResidual(data, s, activation, "composed");
            assert.deepEqual(errors, [], `${shape} ${activation} ${what}: GPU errors`);
            assertSameAsComposed(fused, composed, dxScale, `${shape} ${activation} ${what}`);
            if (activation === "relu" && what === "cancelling") {
              assert.ok(fused[0].some((v, k) => k % 3 === 0 && v === 0), "cancelled to 0");
            }
          }
          await tf.setBackend("cpu");
          const cpu = await runResidual(data, shortcut, activation, "fused");
          await tf.setBackend("webgpu");
          const fused = await runResidual(data, shortcut, activation, "fused");
          for (const [k, name] of RESIDUAL_NAMES.entries()) {
            const scale = name === "dx" ? dxScale : 0;
            const err = relErr(fused[k], cpu[k], scale);
            assert.ok(err <= 1e-5, `${shape} ${activation} ${name} vs cpu tf-ops: ${err}`);
          }
        }
      }
    } finally {
      unregisterBatchNormKernels();
      unregisterFastKernels();
      await tf.setBackend("webgpu");
    }
  },
});

Deno.test({
  name: "fused batch norm: the same call twice gives the same bits (what the cancelling " +
    "shortcut above relies on), before and after other shapes run",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const errors = gpuErrors();
    try {
      registerBatchNormKernels();
      const runs = async () => {
        const out: Float32Array[][] = [];
        for (const [i, shape] of CASES.entries()) {
          const data = makeData(shape, 500 + i, 0.5, 1.5);
          const rng = new Rng(600 + i);
          const shortcut = Float32Array.from(data.x, () => normal(rng));
          out.push(await runResidual(data, shortcut, "relu", "fused"));
          out.push(await runBn(data, "linear"));
        }
        return out;
      };
      const [first, second] = [await runs(), await runs()];
      assert.deepEqual(errors, [], "GPU errors");
      for (let r = 0; r < first.length; r++) {
        const shape = CASES[r >> 1];
        first[r].forEach((values, k) => {
          const bad = mismatches(values, second[r][k]);
          assert.deepEqual(bad, [], `${shape} run ${r % 2} output ${k} at ${bad}`);
        });
      }
    } finally {
      unregisterBatchNormKernels();
      unregisterFastKernels();
    }
  },
});

Deno.test({
  name: "fused batch norm: exact statistics for a large mean and a small spread",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    try {
      registerBatchNormKernels();
      for (const [i, shape] of ([[4, 9, 7, 17], [5, 33, 31, 4]] as Shape4[]).entries()) {
        const data = makeData(shape, 7 + i, 100, 0.01);
        for (const activation of ["linear", "relu"] as Activation[]) {
          const fused = await runBn(data, activation);
          const ref = referenceF64(data, activation, fused[0]).values;
          // Inputs near 100 carry f32 steps of 7.6e-6 against a spread of 0.01, so about 1e-3
          // of x̂ is all f32 can hold; E[x²] - E[x]² in f32 is off by ~1e-3 / 1e-4 = 10x.
          const tol = [1e-3, 1e-6, 5e-4, 2e-3, 5e-3, 1e-5];
          for (const [k, name] of NAMES.entries()) {
            const err = relErr(fused[k], ref[k]);
            assert.ok(err <= tol[k], `${shape} ${activation} ${name}: ${err} > ${tol[k]}`);
          }
        }
        // The test can tell: the one-pass formula in f32 misses the variance by far more.
        const c = shape[3], m = data.x.length / c;
        const s1 = new Float32Array(c), s2 = new Float32Array(c);
        for (let j = 0; j < data.x.length; j++) {
          s1[j % c] = Math.fround(s1[j % c] + data.x[j]);
          s2[j % c] = Math.fround(s2[j % c] + Math.fround(data.x[j] * data.x[j]));
        }
        const naive = Array.from(s1, (s, k) => Math.fround(s2[k] / m - (s / m) ** 2));
        assert.ok(relErr(naive, referenceF64(data, "linear").values[2]) > 1e-2);
      }
    } finally {
      unregisterBatchNormKernels();
      unregisterFastKernels();
    }
  },
});

Deno.test({
  name: "fused batch norm: 6 dispatches per forward + backward (with a residual too), no " +
    "leaks, registered by installWebGpu",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    try {
      const shape: Shape4 = [4, 8, 8, 16];
      const data = makeData(shape, 3, 0, 1);
      const x = tf.tensor4d(data.x, shape), dy = tf.tensor4d(data.dy, shape);
      const gamma = tf.tensor1d(data.gamma), beta = tf.tensor1d(data.beta);
      const shortcut = tf.tensor4d(data.dy.map((v) => 0.5 - v), shape);
      const step = async () => {
        const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          batchNormTraining(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, EPS).y
        )([x, gamma, beta], dy);
        for (const t of grads) await t.data();
        tf.dispose(grads);
      };
      // relu(bn(x) + shortcut) with the gradient of the shortcut as well.
      const residualStep = async () => {
        const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, s: tf.Tensor) =>
          batchNormTraining(a as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, EPS, {
            activation: "relu",
            shortcut: s as tf.Tensor4D,
          }).y
        )([x, gamma, beta, shortcut], dy);
        for (const t of grads) await t.data();
        tf.dispose(grads);
      };
      unregisterFastKernels();
      assert.ok(!fusedBatchNormAvailable());
      await step(); // compile
      const stock = await countDispatches(step);
      await residualStep(); // compile
      const stockResidual = await countDispatches(residualStep);
      registerFastKernels();
      assert.ok(fusedBatchNormAvailable());
      await step(); // compile
      await residualStep();
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const tensors = tf.memory().numTensors, dataIds = backend.numDataIds();
      resetFusedBatchNormStats();
      const fused = await countDispatches(step);
      assert.deepEqual(fusedBatchNormStats(), { forward: 1, backward: 1 });
      assert.equal(fused, 6);
      assert.ok(stock >= 4 * fused, `tf-ops path: ${stock} dispatches, fused: ${fused}`);
      // The residual add, the ReLU and their gradients take no dispatch of their own.
      const fusedResidual = await countDispatches(residualStep);
      assert.deepEqual(fusedBatchNormStats(), { forward: 2, backward: 2 });
      assert.equal(fusedResidual, 6);
      assert.ok(stockResidual >= stock + 4, `tf-ops path with residual: ${stockResidual}`);
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(backend.numDataIds(), dataIds);
      unregisterFastKernels();
      assert.equal(tf.getKernel(FUSED_BATCH_NORM, "webgpu"), undefined);
      assert.equal(tf.getKernel(FUSED_BATCH_NORM_GRAD, "webgpu"), undefined);
      tf.dispose([x, dy, gamma, beta, shortcut]);
      await tf.setBackend("cpu");
      registerFastKernels();
      assert.ok(!fusedBatchNormAvailable(), "no fused kernel on the cpu backend");
    } finally {
      unregisterFastKernels();
      await tf.setBackend("webgpu");
    }
  },
});

Deno.test("planBatchNorm: chunks cover the rows, lanes read at least 4 rows", () => {
  for (const [rows, channels] of [[1, 1], [15, 3], [1615, 64], [65536, 16], [140, 440]]) {
    const p = planBatchNorm(rows, channels);
    assert.equal(p.tileC * p.tileR, 256);
    assert.ok(p.tileC >= Math.min(channels, 64) && p.tileC <= 64);
    assert.ok(p.chunk * p.splits >= rows && p.chunk * (p.splits - 1) < rows);
    if (p.splits > 1) assert.ok(p.chunk >= 4 * p.tileR);
  }
  assert.equal(planBatchNorm(65536, 16).splits, 256);
});

Deno.test({
  name: "fused batch norm: the exact cases give the same bits with the GPU lagging far behind " +
    "the host (as on a loaded machine)",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const errors = gpuErrors();
    // One value per channel: y = beta and mean = x exactly, in both paths. A cancelling
    // shortcut: the ReLU's input is exactly 0 at every third value.
    const single = makeData([1, 1, 1, 3], 105, 0.5, 1.5);
    const data = makeData([1, 3, 5, 1], 300, 0.5, 1.5);
    const rng = new Rng(400);
    const shortcut = Float32Array.from(data.x, () => normal(rng));
    const exact = async () => {
      const out: Float32Array[][] = [];
      registerBatchNormKernels();
      const fused = await runBn(single, "linear");
      unregisterBatchNormKernels();
      const stock = await runBn(single, "linear");
      registerBatchNormKernels();
      // Our kernel subtracts the mean first: y = beta to the bit. tfjs's own adds x·inv and
      // -mean·inv to beta in one dot product (see the first test), which may leave an ulp of them.
      assert.deepEqual([...fused[0]], [...single.beta], "y = beta");
      for (const ys of [fused, stock]) assert.deepEqual([...ys[1]], [...single.x], "mean = x");
      const [bn] = await runResidual(data, new Float32Array(data.x.length), "linear", "fused");
      const cancelling = shortcut.map((v, k) => k % 3 === 0 ? -bn[k] : v);
      const a = await runResidual(data, cancelling, "relu", "fused");
      const b = await runResidual(data, cancelling, "relu", "composed");
      assertSameAsComposed(a, b, referenceF64(data, "linear").dxScale, "cancelling");
      out.push(fused, stock, a, b);
      return out;
    };
    try {
      const calm = await exact();
      const unlag = lagSubmits();
      let lagged: Float32Array[][];
      try {
        lagged = await exact();
      } finally {
        unlag();
      }
      assert.deepEqual(errors, [], "GPU errors");
      calm.forEach((outputs, r) =>
        outputs.forEach((values, k) => {
          const bad = mismatches(values, lagged[r][k]);
          assert.deepEqual(bad, [], `run ${r} output ${k} at ${bad}`);
        })
      );
    } finally {
      unregisterBatchNormKernels();
      unregisterFastKernels();
    }
  },
});
