/**
 * Micro-benchmark of what tfjs-backend-webgpu spends per kernel dispatch, stock against the
 * dispatch patch of `webgpu/runtime/dispatch_cache.ts`, on whatever WebGPU adapter Deno offers.
 *
 * Two workloads: a chain of `--ops` small elementwise `tf.add`s (1,024 floats, on the GPU), and
 * ResNet20 training steps (`training/step.ts`) at `--batch`. For each, stock and patched runs
 * alternate `--reps` times and the fastest of each is kept; it prints microseconds per dispatch
 * (wall time of the whole workload divided by its dispatches, so on a software adapter it
 * includes the kernels' own run time) and the WebGPU objects created per dispatch, counted by
 * listeners (`webgpu/runtime/patches.ts`) on `GPUDevice.createBindGroup`/`createBuffer`,
 * `GPUQueue.writeBuffer`/`submit` and the backend's program runs.
 * With `--profile`, also the time inside each backend phase of the add chain (stock).
 *
 * Usage: `deno run --allow-read --allow-env bench/dispatch.ts [--ops 2000] [--batch 8]
 * [--steps 3] [--reps 3] [--submit-batch 64] [--only add|train] [--profile] [--fast-kernels]`
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import { type FlagSpec, helpText, parseFlags, runCli } from "../cli/args.ts";
import { initBackend } from "../backend/backend.ts";
import { createModel } from "../models/registry.ts";
import { SGD } from "../training/optimizer.ts";
import { trainBatch } from "../training/step.ts";
import { installDispatchCache, uninstallDispatchCache } from "../webgpu/runtime/dispatch_cache.ts";
import { listen, ORDER } from "../webgpu/runtime/patches.ts";
import { internals, METHODS } from "../webgpu/runtime/tfjs.ts";

/** WebGPU calls counted while a workload runs. */
export interface CallCounts {
  /** `device.createBindGroup` calls. */
  bindGroups: number;
  /** `device.createBuffer` calls. */
  buffers: number;
  /** `queue.writeBuffer` calls. */
  writes: number;
  /** `queue.submit` calls. */
  submits: number;
  /** `runWebGPUProgram` calls (kernel dispatches). */
  dispatches: number;
}

/**
 * Counts the WebGPU calls of the webgpu backend while `fn` runs.
 *
 * @param fn the workload
 * @returns what `fn` returned and the calls it made
 * @example
 * ```ts
 * import { initBackend } from "../backend/backend.ts";
 * import { countCalls } from "./dispatch.ts";
 * if ((await initBackend({ log: null })).backend === "webgpu") {
 *   const { counts } = await countCalls(async () => {});
 *   console.log(counts.dispatches); // 0
 * }
 * ```
 */
export async function countCalls<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; counts: CallCounts }> {
  const be = internals(tf.backend() as WebGPUBackend);
  const counts: CallCounts = { bindGroups: 0, buffers: 0, writes: 0, submits: 0, dispatches: 0 };
  const count = (obj: object, name: string, field: keyof CallCounts) =>
    listen(obj, name, ORDER.count, (_self, args, next) => {
      counts[field]++;
      return next(args);
    });
  const undo = [
    count(be.device, "createBindGroup", "bindGroups"),
    count(be.device, "createBuffer", "buffers"),
    count(be.device.queue, "writeBuffer", "writes"),
    count(be.device.queue, "submit", "submits"),
    count(be, METHODS.run, "dispatches"),
  ];
  try {
    return { result: await fn(), counts };
  } finally {
    for (const off of undo) off();
  }
}

/** A chain of `n` dependent `tf.add`s on 1,024-float GPU tensors; returns the last values. */
async function addChain(n: number): Promise<Float32Array> {
  // 1,024 floats is above tfjs's CPU hand-off threshold (1,000), so every add is a GPU dispatch.
  const [a, b] = tf.tidy(() => [tf.range(0, 1024).div(7), tf.range(0, 1024).mul(0.5)]);
  let x = a;
  for (let i = 0; i < n; i++) {
    const y = tf.add(x, b);
    if (x !== a) x.dispose();
    x = y;
  }
  const out = await x.data() as Float32Array;
  tf.dispose([x, a, b]);
  return out;
}

/** What one timed workload gave. */
interface Timing {
  ms: number;
  counts: CallCounts;
}

async function timed(fn: () => Promise<unknown>): Promise<Timing> {
  const t0 = performance.now();
  const { counts } = await countCalls(fn);
  return { ms: performance.now() - t0, counts };
}

/** Alternates stock and patched runs and keeps the fastest of each. */
async function compare(
  label: string,
  reps: number,
  submitBatch: number,
  run: () => Promise<unknown>,
): Promise<void> {
  const best: Record<"stock" | "patched", Timing | null> = { stock: null, patched: null };
  for (let r = 0; r < reps; r++) {
    for (const mode of ["stock", "patched"] as const) {
      if (mode === "patched") installDispatchCache({ submitBatch });
      else uninstallDispatchCache();
      await run(); // warm-up: pipelines, buffer pool, caches
      const t = await timed(run);
      if (best[mode] === null || t.ms < best[mode]!.ms) best[mode] = t;
    }
  }
  uninstallDispatchCache();
  for (const mode of ["stock", "patched"] as const) {
    const { ms, counts } = best[mode]!;
    const per = (k: keyof CallCounts) => (counts[k] / counts.dispatches).toFixed(3);
    console.log(
      `${label.padEnd(26)} ${mode.padEnd(8)} ${String(counts.dispatches).padStart(6)} dispatches ` +
        `${ms.toFixed(0).padStart(7)} ms ${
          (ms * 1000 / counts.dispatches).toFixed(1).padStart(7)
        }` +
        ` us/dispatch | per dispatch: bindGroups ${per("bindGroups")} buffers ${per("buffers")}` +
        ` writes ${per("writes")} submits ${per("submits")}`,
    );
  }
}

/** Time inside each backend phase of the stock add chain, in microseconds per dispatch. */
async function profile(ops: number): Promise<void> {
  uninstallDispatchCache();
  const be = internals(tf.backend() as WebGPUBackend);
  const time: Record<string, number> = {};
  const timeIt = (obj: object, name: string, label: string) =>
    listen(obj, name, ORDER.count, (_self, args, next) => {
      const t0 = performance.now();
      try {
        return next(args);
      } finally {
        time[label] = (time[label] ?? 0) + performance.now() - t0;
      }
    });
  await addChain(ops);
  const { run, record, uniforms, submit } = METHODS;
  const undo = [run, record, uniforms, submit].map((n) => timeIt(be, n, `backend.${n}`));
  undo.push(
    timeIt(be.device, "createBindGroup", "device.createBindGroup"),
    timeIt(be.device.queue, "writeBuffer", "queue.writeBuffer"),
    timeIt(be.device.queue, "submit", "queue.submit"),
    timeIt(GPUComputePipeline.prototype, "getBindGroupLayout", "pipeline.getBindGroupLayout"),
  );
  const t0 = performance.now();
  await addChain(ops);
  const total = performance.now() - t0;
  for (const off of undo) off();
  console.log(`profile of ${ops} stock adds (nested phases; wall ${total.toFixed(0)} ms):`);
  console.log(`  ${"whole op (tf.add)".padEnd(30)} ${(total * 1000 / ops).toFixed(2)} us/dispatch`);
  for (const [k, v] of Object.entries(time)) {
    console.log(`  ${k.padEnd(30)} ${(v * 1000 / ops).toFixed(2)} us/dispatch`);
  }
}

const FLAGS: Record<string, FlagSpec> = {
  ops: { kind: "int", help: "tf.add calls of the add chain (default 2000)" },
  batch: { kind: "int", help: "ResNet20 batch size (default 8)" },
  steps: { kind: "int", help: "ResNet20 training steps per repetition (default 3)" },
  reps: { kind: "int", help: "repetitions, best taken (default 3)" },
  "submit-batch": { kind: "int", help: "dispatches per queue.submit with the patch (default 64)" },
  only: { kind: "choice", choices: ["add", "train"], help: "one workload only" },
  profile: { kind: "bool", help: "profile the stock dispatch path's phases first" },
  "fast-kernels": { kind: "bool", help: "with the toolkit's kernels (the patch measured alone)" },
  help: { kind: "bool", help: "show this help" },
};

async function main(args: string[]): Promise<void> {
  const { values: v } = parseFlags(args, FLAGS);
  if (v.help) {
    console.log(
      helpText("usage: deno run --allow-read --allow-env bench/dispatch.ts [flags]", FLAGS),
    );
    return;
  }
  const values = {
    ops: String(v.ops ?? 2000),
    batch: String(v.batch ?? 8),
    steps: String(v.steps ?? 3),
    reps: String(v.reps ?? 3),
    "submit-batch": String(v["submit-batch"] ?? 64),
    only: v.only as string | undefined,
    profile: v.profile === true,
    "fast-kernels": v["fast-kernels"] === true,
  };
  const info = await initBackend({ log: null, fastKernels: values["fast-kernels"] });
  uninstallDispatchCache(); // measure the patch alone, whatever installWebGpu installs
  console.log(`adapter: ${info.adapter}; fast kernels ${values["fast-kernels"] ? "on" : "off"}`);
  const reps = Number(values.reps);
  const submitBatch = Number(values["submit-batch"]);
  if (values.profile) await profile(Number(values.ops));
  if (values.only !== "train") {
    const ops = Number(values.ops);
    await compare(`add x${ops}`, reps, submitBatch, () => addChain(ops));
  }
  if (values.only !== "add") {
    const batch = Number(values.batch), steps = Number(values.steps);
    const model = createModel("resnet20", { seed: 0 });
    const opt = new SGD({ lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
    const x = tf.randomNormal([batch, 32, 32, 3], 0, 1, "float32", 1) as tf.Tensor4D;
    const y = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % 10), "int32");
    const train = async () => {
      for (let s = 0; s < steps; s++) {
        const r = trainBatch(model, opt, x, y);
        await r.loss.data();
        tf.dispose([r.loss, r.correct]);
      }
    };
    await compare(`resnet20 b${batch} x${steps} steps`, reps, submitBatch, train);
    tf.dispose([x, y]);
    opt.dispose();
    model.dispose();
  }
}

if (import.meta.main) await runCli(() => main(Deno.args));
