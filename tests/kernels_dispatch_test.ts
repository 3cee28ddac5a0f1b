/**
 * The dispatch patch of `webgpu/runtime/dispatch_cache.ts`: installed and removed cleanly (also through
 * `registerFastKernels`), the same uniform bytes as tfjs's own `makeUniforms`, bit-identical
 * ResNet20 training steps with and without it, and fewer bind groups and uniform writes per step.
 *
 * @module
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import {
  dispatchCacheInstalled,
  dispatchCacheStats,
  installDispatchCache,
  uninstallDispatchCache,
} from "../webgpu/runtime/dispatch_cache.ts";
import { registerFastKernels, unregisterFastKernels } from "../webgpu/install.ts";
import { counters, directCounters } from "../webgpu/runtime/counters.ts";
import { createModel } from "../models/registry.ts";
import { SGD } from "../training/optimizer.ts";
import { namedParameters, trainBatch } from "../training/step.ts";

const info = await initBackend({ log: null });
const onWebgpu = info.backend === "webgpu";
const FLAG = "WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE";
const PATCHED = ["recordAndSubmit", "runWebGPUProgram", "getBufferData"];

type Obj = Record<string, unknown>;
function backendObj(): Obj & { device: GPUDevice; bufferManager: Obj } {
  return tf.backend() as unknown as Obj & { device: GPUDevice; bufferManager: Obj };
}

/** Wraps `obj[name]` to observe its calls while `fn` runs, then puts it back. */
async function observe<T>(
  obj: Obj,
  name: string,
  seen: (...args: unknown[]) => void,
  fn: () => Promise<T>,
): Promise<T> {
  const own = Object.getOwnPropertyDescriptor(obj, name);
  const f = obj[name] as (...a: unknown[]) => unknown;
  obj[name] = function (this: unknown, ...a: unknown[]) {
    seen(...a);
    return f.apply(this, a);
  };
  try {
    return await fn();
  } finally {
    if (own) Object.defineProperty(obj, name, own);
    else delete obj[name];
  }
}

Deno.test({
  name: "dispatch patch: installs, is idempotent, and uninstalls to the stock methods",
  ignore: !onWebgpu,
  fn() {
    const be = backendObj();
    assert.equal(dispatchCacheInstalled(), true, "installWebGpu (initBackend) installs it");
    unregisterFastKernels();
    assert.equal(dispatchCacheInstalled(), false);
    for (const name of PATCHED) assert.equal(Object.hasOwn(be, name), false, name);
    assert.equal(Object.hasOwn(be.bufferManager, "acquireBuffer"), false);
    const before = tf.env().get(FLAG);
    assert.equal(installDispatchCache({ submitBatch: 48 }), true);
    assert.equal(installDispatchCache({ submitBatch: 99 }), true); // idempotent
    assert.equal(tf.env().get(FLAG), 48);
    for (const name of PATCHED) assert.equal(Object.hasOwn(be, name), true, name);
    assert.equal(Object.hasOwn(be.bufferManager, "acquireBuffer"), true);
    assert.equal(uninstallDispatchCache(), true);
    assert.equal(uninstallDispatchCache(), false);
    assert.equal(tf.env().get(FLAG), before);
    for (const name of PATCHED) assert.equal(Object.hasOwn(be, name), false, name);
    assert.equal(Object.hasOwn(be.bufferManager, "acquireBuffer"), false);
    assert.equal(dispatchCacheStats(), null);
    registerFastKernels();
    assert.equal(dispatchCacheInstalled(), true);
  },
});

/** Ops with varied ranks, broadcasting, program uniforms and uploads; returns their values. */
async function mixedOps(): Promise<Float32Array[]> {
  const outs = tf.tidy(() => {
    const a = tf.range(0, 3 * 5 * 7 * 2).reshape([3, 5, 7, 2]).div(11);
    const b = tf.range(0, 14).reshape([7, 2]).mul(0.25);
    const c = a.add(b).relu().mul(tf.scalar(1.5)); // broadcast, scalar upload
    const s = c.sum([1, 2]); // reduction
    const t = c.transpose([0, 3, 1, 2]); // program uniforms (perm)
    const sl = c.slice([1, 1, 2, 0], [2, 3, 4, 2]); // program uniforms (start)
    const m = tf.matMul(a.reshape([15, 14]), b.reshape([14, 1])); // matmul
    const cv = tf.conv2d(
      a.slice([0, 0, 0, 0], [1, 5, 7, 2]) as tf.Tensor4D,
      tf.ones([3, 3, 2, 4]),
      2,
      "same",
    );
    const big = tf.range(0, 5000).mul(-0.5).exp(); // 1-D shapes, empty strides
    return [c, s, t, sl, m, cv, big];
  });
  const values = await Promise.all(outs.map((o) => o.data() as Promise<Float32Array>));
  tf.dispose(outs);
  return values;
}

Deno.test({
  name: "dispatch patch: uniform blocks are byte for byte the ones tfjs's makeUniforms writes",
  ignore: !onWebgpu,
  async fn() {
    const be = backendObj();
    const capture = async () => {
      const blocks = new Set<string>();
      const values = await observe(be.device.queue as unknown as Obj, "writeBuffer", (...a) => {
        const [buffer, offset, data, dataOffset, size] = a as [
          GPUBuffer,
          number,
          ArrayBuffer,
          number,
          number,
        ];
        if ((buffer.usage & GPUBufferUsage.UNIFORM) === 0) return;
        assert.equal(offset, 0);
        const bytes = new Uint8Array(data, dataOffset ?? 0, size ?? data.byteLength);
        blocks.add(Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join(""));
      }, mixedOps);
      return { blocks, values };
    };
    uninstallDispatchCache();
    const stock = await capture();
    installDispatchCache(); // a fresh cache: every block of the ops is written once
    const patched = await capture();
    const stats = dispatchCacheStats()!;
    assert.ok(stock.blocks.size >= 8, `only ${stock.blocks.size} distinct uniform blocks`);
    assert.deepEqual([...patched.blocks].sort(), [...stock.blocks].sort());
    assert.equal(stats.stockDispatches, 0);
    assert.equal(stats.uniformMisses, patched.blocks.size);
    for (let i = 0; i < stock.values.length; i++) {
      assert.deepEqual(patched.values[i], stock.values[i], `output ${i}`);
    }
  },
});

/** Counts of WebGPU calls made while `fn` runs. */
async function counting(fn: () => Promise<void>) {
  const be = backendObj();
  const n = { bindGroups: 0, uniformWrites: 0, buffers: 0, dispatches: 0 };
  // Direct dispatches (in-place SGD and running statistics) have their own bind-group cache:
  // only tfjs's programs are counted here.
  const directBindGroups = directCounters.bindGroups;
  const device = be.device as unknown as Obj;
  const queue = be.device.queue as unknown as Obj;
  await observe(
    device,
    "createBindGroup",
    () => n.bindGroups++,
    () =>
      observe(
        device,
        "createBuffer",
        () => n.buffers++,
        () =>
          observe(queue, "writeBuffer", (buffer) => {
            if (((buffer as GPUBuffer).usage & GPUBufferUsage.UNIFORM) !== 0) {
              n.uniformWrites++;
            }
          }, () => observe(be, "runWebGPUProgram", () => n.dispatches++, fn)),
      ),
  );
  n.bindGroups -= directCounters.bindGroups - directBindGroups;
  return n;
}

/** ResNet20 (seed 5) trained `steps` steps at batch 4: losses, last-step counts, weights. */
async function trainRun(steps: number) {
  const model = createModel("resnet20", { seed: 5 });
  const opt = new SGD({ lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });
  const x = tf.tidy(() => tf.range(0, 4 * 32 * 32 * 3).reshape([4, 32, 32, 3]).mul(0.37).sin());
  const y = tf.tensor1d([3, 1, 4, 1], "int32");
  const losses: number[] = [];
  let last = { bindGroups: 0, uniformWrites: 0, buffers: 0, dispatches: 0 };
  let ms = 0;
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    last = await counting(async () => {
      const r = trainBatch(model, opt, x as tf.Tensor4D, y);
      losses.push((await r.loss.data())[0]);
      tf.dispose([r.loss, r.correct]);
    });
    ms = performance.now() - t0;
  }
  const params = namedParameters(model);
  const weights = new Map<string, Float32Array>();
  for (const p of params) weights.set(p.name, await p.variable.data() as Float32Array);
  tf.dispose([x, y]);
  opt.dispose();
  model.dispose();
  return { losses, last, ms, weights };
}

Deno.test({
  name: "dispatch patch: ResNet20 training steps are bit-identical, with fewer bind groups",
  ignore: !onWebgpu,
  sanitizeResources: false,
  async fn() {
    const steps = 4;
    uninstallDispatchCache();
    const stock = await trainRun(steps);
    installDispatchCache();
    counters.reset("dispatchCache");
    const patched = await trainRun(steps);
    const stats = dispatchCacheStats()!;
    assert.deepEqual(patched.losses, stock.losses); // exact float equality, every step
    assert.ok(stock.weights.size > 20);
    for (const [name, w] of stock.weights) {
      assert.deepEqual(patched.weights.get(name), w, `weights of ${name}`);
    }
    // Same work, cheaper: every dispatch reuses its uniform block, most reuse their bind group.
    assert.equal(patched.last.dispatches, stock.last.dispatches);
    assert.equal(stock.last.bindGroups, stock.last.dispatches);
    assert.equal(stock.last.uniformWrites, stock.last.dispatches);
    assert.equal(patched.last.uniformWrites, 0);
    assert.ok(
      patched.last.bindGroups < stock.last.bindGroups,
      `${patched.last.bindGroups} bind groups, stock ${stock.last.bindGroups}`,
    );
    assert.equal(stats.stockDispatches, 0);
    const us = (r: typeof stock) => (r.ms * 1000 / r.last.dispatches).toFixed(0);
    console.log(
      `  last step: ${stock.last.dispatches} dispatches; bind groups ${stock.last.bindGroups} -> ` +
        `${patched.last.bindGroups}, uniform writes ${stock.last.uniformWrites} -> ` +
        `${patched.last.uniformWrites}, buffers created ${stock.last.buffers} -> ` +
        `${patched.last.buffers}; wall ${us(stock)} -> ${us(patched)} us/dispatch (llvmpipe)`,
    );
  },
});
