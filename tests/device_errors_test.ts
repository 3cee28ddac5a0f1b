/**
 * GPU errors stop the step: a shader that fails to compile, or a validation error, during a
 * training step on Deno's webgpu backend makes the step throw the GPU's message (never a loss
 * computed from wrong numbers), and the next, normal step works.
 *
 * @module
 */
import assert from "node:assert/strict";
import { tf, type WebGPUBackend } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { createModel } from "../models/registry.ts";
import { CapturedTrainStep } from "../training/captured.ts";
import { SGD } from "../training/optimizer.ts";
import { trainStep } from "../training/step.ts";
import { program, type ProgramKernel } from "../webgpu/kernels/declare.ts";
import { hasAdapter } from "./support/gpu.ts";

/** A program whose WGSL names a variable that does not exist. */
const BROKEN: ProgramKernel<Record<string, never>> = {
  name: "test_broken_shader",
  shader: () => ({
    variableNames: ["x"],
    workgroupSize: [64, 1, 1],
    code: () => "fn main() { result[0] = no_such_variable; }",
  }),
};

/** Runs `inject` once, right after the step's first Conv2D kernel. */
async function withInjection<T>(inject: (x: tf.TensorInfo) => void, f: () => Promise<T>) {
  const engine = tf.engine() as unknown as {
    runKernel: (name: string, inputs: Record<string, tf.TensorInfo>, ...r: unknown[]) => unknown;
  };
  const runKernel = engine.runKernel;
  let done = false;
  engine.runKernel = function (this: unknown, name, inputs, ...rest) {
    const out = runKernel.call(this, name, inputs, ...rest);
    if (!done && name === "Conv2D") {
      done = true;
      inject(inputs.x);
    }
    return out;
  };
  try {
    return await f();
  } finally {
    engine.runKernel = runKernel;
  }
}

Deno.test({
  name: "device errors: a failed shader or a validation error makes the step throw",
  ignore: !hasAdapter,
  async fn() {
    await initBackend({ log: null });
    const backend = tf.backend() as WebGPUBackend;
    const device = (backend as unknown as { device: GPUDevice }).device;
    // A failed step's work is dropped with its command buffer, so the model's state after it is
    // undefined: each normal step after a failure starts from a fresh model.
    let model = createModel("resnet20", { inputSize: 8, seed: 1 });
    let opt = new SGD({ lr: 0.05, momentum: 0.9 });
    const fresh = () => {
      model.dispose();
      model = createModel("resnet20", { inputSize: 8, seed: 1 });
      opt = new SGD({ lr: 0.05, momentum: 0.9 });
    };
    const x = tf.randomNormal([2, 8, 8, 3], 0, 1, "float32", 1) as tf.Tensor4D;
    const y = tf.tensor1d([1, 2], "int32");
    try {
      assert.ok(Number.isFinite(await trainStep(model, opt, x, y)));

      // A shader that fails to compile, run by the step.
      await assert.rejects(
        withInjection((t) => {
          const p = program(BROKEN, {}, {
            outputShape: [4],
            dispatchLayout: { x: [0] },
            dispatch: [1, 1, 1],
          });
          const out = backend.runWebGPUProgram(p, [t], "float32");
          backend.disposeData(out.dataId);
        }, () => trainStep(model, opt, x, y)),
        (e: Error) => {
          assert.match(e.message, /^WebGPU validation error building test_broken_shader/);
          assert.match(e.message, /no_such_variable/);
          return true;
        },
      );
      fresh();
      assert.ok(Number.isFinite(await trainStep(model, opt, x, y)), "a normal step after");

      // A validation error of the step's other GPU work (an invalid buffer usage).
      await assert.rejects(
        withInjection(() => {
          device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
        }, () => trainStep(model, opt, x, y)),
        /^Error: WebGPU validation error: |^WebGPU validation error: /,
      );
      fresh();
      assert.ok(Number.isFinite(await trainStep(model, opt, x, y)), "a normal step after");

      // A replayed step: the error of the work before it stops the next one.
      const captured = new CapturedTrainStep(model, opt);
      try {
        for (let i = 0; i < 3; i++) {
          const r = captured.run(x, y);
          await r.loss.data();
          tf.dispose([r.loss, r.correct]);
        }
        assert.ok(captured.stats.replays >= 1, "replays");
        device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
        await new Promise((r) => setTimeout(r, 50));
        assert.throws(() => captured.run(x, y), /WebGPU validation error: /);
        // Nothing ran (the check comes first): the replays go on.
        const r = captured.run(x, y);
        assert.ok(Number.isFinite((await r.loss.data())[0]), "a replayed step after");
        tf.dispose([r.loss, r.correct]);
      } finally {
        captured.dispose();
      }
    } finally {
      tf.dispose([x, y]);
      model.dispose();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});
