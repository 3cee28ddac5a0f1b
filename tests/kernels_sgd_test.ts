import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { countDispatches, counters } from "../webgpu/runtime/counters.ts";
import { hasAdapter } from "./support/gpu.ts";
import { registerFastKernels, unregisterFastKernels } from "../webgpu/install.ts";
import { MAX_ITEMS_PER_DISPATCH } from "../webgpu/kernels/multi_tensor.ts";
import { provide, provided } from "../ops/extensions.ts";
import { inPlaceSgdAvailable } from "../ops/sgd.ts";
import type { WebGPUBackend } from "../deps.ts";
import { SGD, type SGDOptions } from "../training/optimizer.ts";
import { Rng } from "../util/rng.ts";

/** Odd sizes (scalar shader), multiples of 4 (vec4 shader), above the CPU hand-off size. */
const SHAPES: number[][] = [[3, 3, 5, 7], [64], [1200], [17, 3], [8, 8, 4, 4]];
const CONFIGS: SGDOptions[] = [
  { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 },
  { lr: 0.05, momentum: 0.9, weightDecay: 5e-4, dampening: 0.1 },
  { lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: true },
  { lr: 0.2, weightDecay: 1e-4 },
  { lr: 0.1, momentum: 0.5 },
];
const STEPS = 4;

/** The in-place update `installWebGpu` provides (taken when the first test starts). */
let inPlaceStep: ReturnType<typeof provided<"sgdStep">> = null;

/** Turns the in-place update on or off alone (the rest of the WebGPU layer stays). */
function inPlace(on: boolean): void {
  inPlaceStep ??= provided("sgdStep");
  provide("webgpu", "sgdStep", on ? inPlaceStep : null);
}

/** The `sgd` counter group. */
const sgdCounts = () => counters.read("sgd");

interface RunResult {
  params: Float32Array[];
  buffers: Map<string, Float32Array>;
}

/**
 * Runs `STEPS` SGD steps from fixed values and gradients; the lr changes after step 2, and the
 * first parameter is read back after every step (tfjs then keeps a CPU copy of it, which an
 * in-place update must not leave stale).
 */
async function runSgd(
  options: SGDOptions,
  seed: number,
  shapes: number[][] = SHAPES,
): Promise<RunResult> {
  const rng = new Rng(seed);
  const fill = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
  const params = shapes.map((shape, i) => ({
    name: `p${i}`,
    variable: tf.variable(tf.tensor(fill(tf.util.sizeFromShape(shape), 1), shape), true),
  }));
  const opt = new SGD(options);
  for (let s = 0; s < STEPS; s++) {
    if (s === 2) opt.lr = options.lr * 0.37;
    const grads = new Map(
      params.map((p) => [p.name, tf.tensor(fill(p.variable.size, 0.5), p.variable.shape)]),
    );
    opt.step(params, grads);
    tf.dispose([...grads.values()]);
    await params[0].variable.data();
  }
  const out: RunResult = { params: [], buffers: new Map() };
  for (const p of params) out.params.push(await p.variable.data() as Float32Array);
  for (const [name, b] of opt.buffers()) out.buffers.set(name, await b.data() as Float32Array);
  opt.dispose();
  for (const p of params) p.variable.dispose();
  return out;
}

/** Largest |a - b| in units of the float32 spacing at b (ulps). */
function maxUlps(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const ulp = Math.max(Math.abs(b[i]) * 2 ** -23, 2 ** -149);
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / ulp);
  }
  return worst;
}

function assertClose(fused: RunResult, ref: RunResult, what: string): void {
  assert.equal(fused.params.length, ref.params.length);
  fused.params.forEach((p, i) => {
    const u = maxUlps(p, ref.params[i]);
    assert.ok(u <= 2, `${what}: param ${i} differs by ${u} ulps`);
  });
  assert.deepEqual([...fused.buffers.keys()], [...ref.buffers.keys()], `${what}: buffer names`);
  for (const [name, b] of fused.buffers) {
    const u = maxUlps(b, ref.buffers.get(name)!);
    assert.ok(u <= 2, `${what}: buffer ${name} differs by ${u} ulps`);
  }
}

/** Items per dispatch of the SGD kernel on the current backend (3 buffers with momentum). */
function perDispatch(momentum: boolean): number {
  const limit = (tf.backend() as WebGPUBackend & { device: GPUDevice }).device.limits
    .maxStorageBuffersPerShaderStage;
  return Math.min(MAX_ITEMS_PER_DISPATCH, Math.floor(limit / (momentum ? 3 : 2)));
}

Deno.test({
  name: "in-place SGD kernel: on with the fast kernels, equal to the tf-ops path",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const info = await initBackend({ log: null });
    assert.equal(info.backend, "webgpu");
    assert.ok(inPlaceSgdAvailable(), "initBackend turns the in-place update on");
    for (const [i, options] of CONFIGS.entries()) {
      inPlace(false);
      assert.ok(!inPlaceSgdAvailable());
      counters.reset("sgd");
      const ref = await runSgd(options, 100 + i);
      assert.equal(sgdCounts().calls, 0, "the tf-ops path does not call the kernel");
      inPlace(true);
      const fused = await runSgd(options, 100 + i);
      assert.equal(sgdCounts().calls, STEPS, "one kernel call per step");
      const per = Math.ceil(SHAPES.length / perDispatch(options.momentum !== undefined));
      assert.equal(sgdCounts().dispatches, STEPS * per);
      assertClose(fused, ref, JSON.stringify(options));
      if (options.momentum) assert.equal(fused.buffers.size, SHAPES.length);
      else assert.equal(fused.buffers.size, 0);
    }
  },
});

Deno.test({
  name: "in-place SGD kernel: more parameters than one dispatch takes, equal to tf ops",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const shapes = Array.from({ length: 40 }, (_, i) => [1 + (i * 7) % 13, 4 + (i % 3)]);
    const options = CONFIGS[0];
    inPlace(false);
    const ref = await runSgd(options, 9, shapes);
    inPlace(true);
    counters.reset("sgd");
    const fused = await runSgd(options, 9, shapes);
    assert.equal(sgdCounts().dispatches, STEPS * Math.ceil(40 / perDispatch(true)));
    assert.ok(sgdCounts().dispatches > STEPS, "several dispatches per step");
    assertClose(fused, ref, "40 parameters");
  },
});

Deno.test({
  name: "in-place SGD kernel: updates in place, never a tensor that shares the parameter",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    inPlace(true);
    const init = tf.tensor1d([1, 2, 3, 4, 5]);
    const variable = tf.variable(init); // shares init's data while init lives
    const opt = new SGD({ lr: 0.5, momentum: 0.9 });
    const params = [{ name: "w", variable }];
    const grad = tf.ones([5]);
    opt.step(params, new Map([["w", grad]]));
    assert.deepEqual([...await init.data()], [1, 2, 3, 4, 5], "the initial tensor is untouched");
    assert.deepEqual([...await variable.data()], [0.5, 1.5, 2.5, 3.5, 4.5]);
    const dataId = variable.dataId, bufferId = opt.buffers().get("w")!.dataId;
    opt.step(params, new Map([["w", grad]]));
    assert.equal(variable.dataId, dataId, "the parameter keeps its buffer");
    assert.equal(opt.buffers().get("w")!.dataId, bufferId, "the momentum buffer keeps its own");
    // buf = 0.9 * 1 + 1 = 1.9; p = p - 0.5 * 1.9
    const want = [0.5, 1.5, 2.5, 3.5, 4.5].map((v) => Math.fround(v - Math.fround(0.5 * 1.9)));
    const got = [...await variable.data()];
    got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `${got} vs ${want}`));
    opt.dispose();
    tf.dispose([init, variable, grad]);
  },
});

Deno.test({
  name: "in-place SGD kernel: agrees with the cpu backend's tf-ops path",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const options = CONFIGS[2];
    const fused = await runSgd(options, 7);
    await initBackend({ backend: "cpu", log: null });
    assert.ok(!inPlaceSgdAvailable(), "tf ops on the cpu backend");
    const cpu = await runSgd(options, 7);
    await initBackend({ log: null });
    fused.params.forEach((p, i) => {
      // Different backends: a few ulps of float32 rounding apart at most.
      const u = maxUlps(p, cpu.params[i]);
      assert.ok(u <= 4, `param ${i}: ${u} ulps from cpu`);
    });
  },
});

Deno.test({
  name: "in-place SGD kernel: fewer dispatches per step; unregistered with the fast kernels",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const count = async (fused: boolean): Promise<number> => {
      inPlace(fused);
      const rng = new Rng(3);
      const params = SHAPES.map((shape, i) => {
        const values = Float32Array.from(
          { length: tf.util.sizeFromShape(shape) },
          () => rng.next(),
        );
        return { name: `q${i}`, variable: tf.tidy(() => tf.variable(tf.tensor(values, shape))) };
      });
      const grads = new Map(params.map((p) => [p.name, tf.onesLike(p.variable)]));
      const opt = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
      opt.step(params, grads); // first step creates the buffers; data now on the GPU
      const n = await countDispatches(() => opt.step(params, grads));
      await params[0].variable.data();
      opt.dispose();
      tf.dispose([...grads.values(), ...params.map((p) => p.variable)]);
      return n;
    };
    const stock = await count(false);
    const fused = await count(true);
    assert.equal(fused, Math.ceil(SHAPES.length / perDispatch(true)), `fused: ${fused}`);
    assert.ok(stock >= 5 * SHAPES.length, `tf ops: ${stock} dispatches`);

    unregisterFastKernels();
    assert.ok(!inPlaceSgdAvailable());
    registerFastKernels();
    assert.ok(inPlaceSgdAvailable());
    unregisterFastKernels();
    assert.ok(!inPlaceSgdAvailable());
  },
});
