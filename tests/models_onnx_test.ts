/**
 * ONNX export: the four models, with the deterministic weights of the parity fixtures, give in
 * ONNX Runtime (onnxruntime-web's WebAssembly backend) the logits they give here, to 1e-4; the
 * graphs use standard opset-17 operators only.
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { onnxProto } from "../deno_deps.ts";
import { ort } from "../dev_deps.ts";
import { initBackend } from "../backend/backend.ts";
import { createModel } from "../models/registry.ts";
import { assignStateDict, stateEntries, torchShape } from "../models/weights.ts";
import { exportOnnx, ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUT } from "../models/onnx.ts";
import type { SafeTensor } from "../io/safetensors.ts";
import { detInput, detStateValue, nchwToNhwc } from "../bench/det.ts";

// Our logits on tfjs's cpu backend (the WebGPU kernels' parity with PyTorch is
// models_parity_test.ts's); fastest on a machine without a GPU.
await initBackend({ backend: "cpu", log: null });
ort.env.wasm.numThreads = 1;

/** Standard ONNX operators (default domain) the export may use. */
const STANDARD_OPS = new Set([
  "Conv",
  "BatchNormalization",
  "Relu",
  "Add",
  "Gemm",
  "GlobalAveragePool",
  "Flatten",
  "Concat",
  "Tanh",
  "Sigmoid",
  "Split",
  "Mul",
  "Sub",
  "Shape",
  "ConstantOfShape",
  "Identity",
]);

const CASES: [string, number, number][] = [
  ["resnet20", 10, 32],
  ["resnet20-convrnn", 10, 32],
  ["resnet20-convgru", 10, 32],
  ["regnet400mf", 4, 64],
];

for (const [name, classes, size] of CASES) {
  Deno.test(`ONNX export: ${name} runs in onnxruntime with our logits`, async () => {
    const model = createModel(name, { numClasses: classes, inputSize: size, seed: 0 });
    const weights = new Map<string, SafeTensor>();
    for (const e of stateEntries(model)) {
      const data = detStateValue(e.name, torchShape(e));
      weights.set(e.name, {
        dtype: data instanceof BigInt64Array ? "I64" : "F32",
        shape: torchShape(e),
        data,
      });
    }
    assignStateDict(model, weights, name);
    const bytes = await exportOnnx(model);

    const proto = onnxProto.onnx.ModelProto.decode(bytes);
    assert.deepEqual(proto.opsetImport.map((o) => [o.domain, Number(o.version)]), [[
      "",
      ONNX_OPSET,
    ]]);
    const nodes = proto.graph?.node ?? [];
    const ops = new Set(nodes.map((n) => n.opType!));
    for (const op of ops) assert.ok(STANDARD_OPS.has(op), `${op} is not a standard operator here`);
    assert.equal(nodes.filter((n) => n.domain).length, 0);
    if (name.includes("conv")) assert.ok(ops.has("Concat") && ops.has("Tanh"));
    if (name === "regnet400mf") assert.ok(ops.has("GlobalAveragePool") && ops.has("Sigmoid"));

    const shape = [3, 3, size, size];
    const nchw = detInput("input.a", shape);
    const x = tf.tensor4d(nchwToNhwc(nchw, shape), [3, size, size, 3]);
    const y = tf.tidy(() => model.predict(x) as tf.Tensor);
    const ours = await y.data() as Float32Array;
    tf.dispose([x, y]);

    const session = await ort.InferenceSession.create(bytes);
    try {
      assert.deepEqual(session.inputNames, [ONNX_INPUT]);
      assert.deepEqual(session.outputNames, [ONNX_OUTPUT]);
      const out = await session.run({ [ONNX_INPUT]: new ort.Tensor("float32", nchw, shape) });
      const theirs = out[ONNX_OUTPUT];
      assert.deepEqual(theirs.dims, [3, classes]);
      const data = theirs.data as Float32Array;
      let worst = 0;
      for (let i = 0; i < ours.length; i++) {
        worst = Math.max(worst, Math.abs(data[i] - ours[i]) / Math.max(1, Math.abs(ours[i])));
      }
      assert.ok(worst <= 1e-4, `${name}: ONNX Runtime differs by ${worst.toExponential(2)}`);
      assert.ok(ours.some((v) => Math.abs(v) > 1e-3));
    } finally {
      await session.release();
      model.dispose();
    }
  });
}
