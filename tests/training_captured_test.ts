import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { countDispatches } from "../webgpu/runtime/counters.ts";
import { registerFastKernels, unregisterFastKernels } from "../webgpu/install.ts";
import { createModel } from "../models/registry.ts";
import { stateEntries } from "../models/weights.ts";
import { CapturedEvalStep, CapturedTrainStep } from "../training/captured.ts";
import { SGD } from "../training/optimizer.ts";
import { evalBatch, namedParameters, trainBatch } from "../training/step.ts";
import { Rng } from "../util/rng.ts";
import { hasAdapter } from "./support/gpu.ts";

const STEPS = 7;

interface Trace {
  losses: number[];
  corrects: number[];
  state: Map<string, number[]>;
  dispatches: number[];
}

/** Seeded batches: the same for both runs. */
function batch(step: number, n: number, size: number): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const rng = new Rng(1000 + step);
  const x = tf.tensor4d(
    Float32Array.from({ length: n * size * size * 3 }, () => rng.next() * 2 - 1),
    [n, size, size, 3],
  );
  const y = tf.tensor1d(Int32Array.from({ length: n }, () => rng.int(10)), "int32");
  return { x, y };
}

/**
 * `STEPS` training steps; the learning rate drops before step 4 and a parameter is reassigned
 * (as loading weights does) before step 5: both must make the captured runner capture again.
 */
async function train(name: string, size: number, captured: boolean) {
  const model = createModel(name, { inputSize: size, seed: 3 });
  const opt = new SGD({ lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
  const runner = captured ? new CapturedTrainStep(model, opt) : null;
  const trace: Trace = { losses: [], corrects: [], state: new Map(), dispatches: [] };
  const tensors: number[] = [];
  for (let s = 0; s < STEPS; s++) {
    if (s === 3) opt.lr = 0.01;
    if (s === 4) {
      const p = namedParameters(model)[0].variable;
      const halved = tf.tidy(() => p.mul(0.5));
      p.assign(halved);
      halved.dispose();
    }
    const { x, y } = batch(s, 2, size);
    let r: { loss: tf.Scalar; correct: tf.Scalar } | undefined;
    trace.dispatches.push(
      await countDispatches(() => {
        r = runner ? runner.run(x, y) : trainBatch(model, opt, x, y);
      }),
    );
    trace.losses.push((await r!.loss.data())[0]);
    trace.corrects.push((await r!.correct.data())[0]);
    tf.dispose([x, y, r!.loss, r!.correct]);
    tensors.push(tf.memory().numTensors);
    // A read back (as a checkpoint does) leaves a CPU copy that the next replay must not stale.
    if (s === 5) {
      trace.state.set("read after step 6", [...await opt.buffers().values().next().value!.data()]);
    }
  }
  for (const e of stateEntries(model)) {
    trace.state.set(e.name, [...await (e.variable.read() as tf.Tensor).data()]);
  }
  for (const [n, b] of opt.buffers()) trace.state.set(`momentum:${n}`, [...await b.data()]);
  const stats = runner ? { ...runner.stats } : null;
  const perStep = runner?.dispatchesPerStep ?? 0;
  runner?.dispose();
  opt.dispose();
  model.dispose();
  return { trace, stats, tensors, perStep };
}

const CASES = [
  ["resnet20", 16, "auto"],
  ["resnet20-convgru", 8, "auto"],
  ["regnet400mf", 32, "auto"],
  // The kernels a hardware GPU gets (workgroup-tiled GEMMs), here on the software adapter.
  ["resnet20", 8, "gpu"],
] as const;

for (const [name, size, profile] of CASES) {
  Deno.test({
    name: `captured training step: ${name} (${profile} kernels) replays bit for bit what tfjs does`,
    ignore: !hasAdapter,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      await initBackend({ log: null });
      unregisterFastKernels();
      registerFastKernels({ profile });
      const eager = await train(name, size, false);
      const captured = await train(name, size, true);
      // First step eager (no momentum buffers yet); captures at steps 2, 4 (new lr) and 5 (new
      // weights); the rest replayed.
      assert.deepEqual(captured.stats, { eager: 1, captures: 3, replays: 3, lastFailure: null });
      assert.deepEqual(captured.trace.losses, eager.trace.losses, "losses");
      assert.deepEqual(captured.trace.corrects, eager.trace.corrects, "correct counts");
      assert.deepEqual([...captured.trace.state.keys()], [...eager.trace.state.keys()]);
      for (const [key, values] of eager.trace.state) {
        assert.deepEqual(captured.trace.state.get(key), values, `${key} differs`);
      }
      // A replayed step runs the kernels an eager step runs, counted as dispatches.
      const replayed = [2, 5, 6];
      for (const s of replayed) {
        assert.equal(captured.trace.dispatches[s], eager.trace.dispatches[s], `step ${s}`);
      }
      assert.equal(captured.perStep, eager.trace.dispatches[6]);
      // No tensors pile up from step to step.
      assert.equal(captured.tensors[6], captured.tensors[5]);
      assert.equal(
        captured.tensors[6],
        eager.tensors[6] + 4,
        "the capture holds x, y, loss, correct",
      );
      unregisterFastKernels();
      registerFastKernels();
    },
  });
}

Deno.test({
  name: "captured training step: stays eager on the cpu backend, same results",
  async fn() {
    await initBackend({ backend: "cpu", log: null });
    const model = createModel("resnet20", { inputSize: 8, seed: 1 });
    const opt = new SGD({ lr: 0.1, momentum: 0.9 });
    const runner = new CapturedTrainStep(model, opt);
    for (let s = 0; s < 2; s++) {
      const { x, y } = batch(s, 2, 8);
      const r = runner.run(x, y);
      assert.ok(Number.isFinite((await r.loss.data())[0]));
      tf.dispose([x, y, r.loss, r.correct]);
    }
    assert.deepEqual(runner.stats, { eager: 2, captures: 0, replays: 0, lastFailure: null });
    runner.dispose();
    opt.dispose();
    model.dispose();
  },
});

Deno.test({
  name: "captured evaluation batch: replays bit for bit what evalBatch computes",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const model = createModel("resnet20", { inputSize: 16, seed: 4 });
    const runner = new CapturedEvalStep(model);
    const tensors: number[] = [];
    // Batches of 3 with smaller ones between: a recording for each size, then replays only.
    const sizes = [3, 3, 2, 3, 2, 3];
    for (const [s, n] of sizes.entries()) {
      const { x, y } = batch(s, n, 16);
      const want = evalBatch(model, x, y);
      const got = runner.run(x, y);
      for (const k of ["logits", "lossSum", "correct"] as const) {
        assert.deepEqual([...await got[k].data()], [...await want[k].data()], `${k}, batch ${s}`);
      }
      tf.dispose([x, y, ...Object.values(want), ...Object.values(got)]);
      tensors.push(tf.memory().numTensors);
    }
    assert.deepEqual(runner.stats, { eager: 0, captures: 2, replays: 4, lastFailure: null });
    assert.equal(tensors[5], tensors[3], "no tensors pile up");
    runner.dispose();
    model.dispose();
  },
});
