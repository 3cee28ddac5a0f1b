/**
 * Several models and optimizers in one process (a script or notebook that trains one model,
 * then another with the same parameter names): their tfjs variables never clash, and disposing
 * them frees every tensor they made.
 *
 * @module
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { createModel } from "../models/registry.ts";
import { CapturedTrainStep } from "../training/captured.ts";
import { SGD } from "../training/optimizer.ts";
import { trainBatch } from "../training/step.ts";

Deno.test({
  name: "two models with the same parameter names, three SGDs, one process; dispose frees all",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null }); // webgpu (in-place SGD kernel) where there is an adapter
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, "float32", 5) as tf.Tensor4D;
    const y = tf.tensor1d([3, 7], "int32");
    const baseline = tf.memory().numTensors;
    for (let round = 0; round < 2; round++) {
      // resnet20 and resnet20-convrnn share `conv1.weight`, `layer1.0.bn1.weight`, ...
      const a = createModel("resnet20", { seed: 1 });
      const b = createModel("resnet20-convrnn", { seed: 1 });
      const optA = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
      const optA2 = new SGD({ lr: 0.1, momentum: 0.9 }); // a second optimizer for one model
      const optB = new SGD({ lr: 0.1, momentum: 0.9 });
      const graphB = new CapturedTrainStep(b, optB);
      try {
        for (let step = 0; step < 3; step++) {
          for (const [model, opt] of [[a, optA], [a, optA2]] as const) {
            const r = trainBatch(model, opt, x, y);
            assert.ok(Number.isFinite((await r.loss.data())[0]));
            tf.dispose([r.loss, r.correct]);
          }
          const r = graphB.run(x, y);
          assert.ok(Number.isFinite((await r.loss.data())[0]));
          tf.dispose([r.loss, r.correct]);
        }
        assert.ok(optA.buffers().has("conv1.weight") && optB.buffers().has("conv1.weight"));
        const names = [optA, optA2, optB].map((o) => o.buffers().get("conv1.weight")!.name);
        assert.equal(new Set(names).size, 3, `distinct variable names: ${names}`);
      } finally {
        graphB.dispose();
        for (const o of [optA, optA2, optB]) o.dispose();
        a.dispose();
        b.dispose();
      }
      assert.equal(tf.memory().numTensors, baseline, `round ${round}: every tensor freed`);
    }
    tf.dispose([x, y]);
  },
});
