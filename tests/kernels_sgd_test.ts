import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { countDispatches } from "../kernels/counters.ts";
import { hasAdapter } from "./support/gpu.ts";
import { registerFastKernels, unregisterFastKernels } from "../kernels/register.ts";
import {
  registerSgdKernel,
  resetSgdKernelStats,
  SGD_KERNEL_NAME,
  sgdKernelRegistered,
  sgdKernelStats,
  unregisterSgdKernel,
} from "../kernels/sgd.ts";
import { SGD, type SGDOptions } from "../training/sgd.ts";
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

interface RunResult {
  params: Float32Array[];
  buffers: Map<string, Float32Array>;
}

/** Runs `STEPS` SGD steps from fixed values and gradients; the lr changes after step 2. */
async function runSgd(options: SGDOptions, seed: number): Promise<RunResult> {
  const rng = new Rng(seed);
  const fill = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
  const params = SHAPES.map((shape, i) => ({
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

Deno.test({
  name: "fused SGD kernel: registered with the fast kernels, equal to the tf-ops path",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const info = await initBackend({ log: null });
    assert.equal(info.backend, "webgpu");
    assert.ok(sgdKernelRegistered(), "initBackend registers the SGD kernel");
    for (const [i, options] of CONFIGS.entries()) {
      unregisterSgdKernel();
      assert.equal(tf.getKernel(SGD_KERNEL_NAME, "webgpu"), undefined);
      resetSgdKernelStats();
      const ref = await runSgd(options, 100 + i);
      assert.equal(sgdKernelStats.calls, 0, "the tf-ops path does not call the kernel");
      registerSgdKernel();
      const fused = await runSgd(options, 100 + i);
      assert.equal(sgdKernelStats.calls, SHAPES.length * STEPS, "one kernel call per parameter");
      const perCall = options.momentum ? 2 : 1;
      assert.equal(sgdKernelStats.dispatches, SHAPES.length * STEPS * perCall);
      assertClose(fused, ref, JSON.stringify(options));
      if (options.momentum) assert.equal(fused.buffers.size, SHAPES.length);
      else assert.equal(fused.buffers.size, 0);
    }
  },
});

Deno.test({
  name: "fused SGD kernel: agrees with the cpu backend's tf-ops path",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const options = CONFIGS[2];
    const fused = await runSgd(options, 7);
    await initBackend({ backend: "cpu", log: null });
    assert.equal(tf.getKernel(SGD_KERNEL_NAME, "cpu"), undefined);
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
  name: "fused SGD kernel: fewer dispatches per step; unregistered with the fast kernels",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const count = async (fused: boolean): Promise<number> => {
      if (fused) registerSgdKernel();
      else unregisterSgdKernel();
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
    assert.equal(fused, 2 * SHAPES.length, `fused: ${fused} dispatches`);
    assert.ok(stock >= 5 * SHAPES.length, `tf ops: ${stock} dispatches`);

    unregisterFastKernels();
    assert.ok(!sgdKernelRegistered());
    assert.equal(tf.getKernel(SGD_KERNEL_NAME, "webgpu"), undefined);
    registerFastKernels();
    assert.ok(sgdKernelRegistered());
    unregisterFastKernels();
    assert.ok(!sgdKernelRegistered());
  },
});
