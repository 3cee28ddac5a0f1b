/**
 * How closely ONNX Runtime reproduces our logits: each model, with the parity fixtures'
 * deterministic weights, exported to ONNX and run in onnxruntime-web (WebAssembly) on 3 images;
 * prints the largest absolute and relative difference from our model on the backend given.
 *
 *     deno run --allow-read bench/onnx_parity.ts [webgpu|cpu]
 *
 * @module
 */
import { tf } from "../deps.ts";
import { ort } from "../dev_deps.ts";
import { initBackend } from "../backend/backend.ts";
import { exportOnnx } from "../models/onnx.ts";
import type { SafeTensor } from "../io/safetensors.ts";
import { createModel } from "../models/registry.ts";
import { assignStateDict, stateEntries, torchShape } from "../models/weights.ts";
import { detInput, detStateValue, nchwToNhwc } from "./det.ts";

const backend = (Deno.args[0] ?? "webgpu") as "webgpu" | "cpu";
const info = await initBackend({ backend, log: null });
console.log(`our model on ${info.backend} (${info.adapter ?? "no adapter"}); onnxruntime-web wasm`);
ort.env.wasm.numThreads = 1;
const cases = [
  ["resnet20", 10, 32],
  ["resnet20-convrnn", 10, 32],
  ["resnet20-convgru", 10, 32],
  ["regnet400mf", 4, 64],
  ["regnet400mf", 10, 224],
] as const;
for (const [name, classes, size] of cases) {
  const model = createModel(name, { numClasses: classes, inputSize: size, seed: 0 });
  const weights = new Map<string, SafeTensor>();
  for (const e of stateEntries(model)) {
    const data = detStateValue(e.name, torchShape(e));
    const dtype = data instanceof BigInt64Array ? "I64" : "F32";
    weights.set(e.name, { dtype, shape: torchShape(e), data });
  }
  assignStateDict(model, weights, name);
  const bytes = await exportOnnx(model);
  const shape = [3, 3, size, size];
  const nchw = detInput("input.a", shape);
  const x = tf.tensor4d(nchwToNhwc(nchw, shape), [3, size, size, 3]);
  const y = tf.tidy(() => model.predict(x) as tf.Tensor);
  const ours = await y.data() as Float32Array;
  tf.dispose([x, y]);
  const session = await ort.InferenceSession.create(bytes);
  const out = await session.run({ input: new ort.Tensor("float32", nchw, shape) });
  const theirs = out.logits.data as Float32Array;
  let abs = 0, rel = 0;
  ours.forEach((v, i) => {
    const d = Math.abs(theirs[i] - v);
    abs = Math.max(abs, d);
    rel = Math.max(rel, d / Math.max(1, Math.abs(v)));
  });
  console.log(
    `${name} ${size}x${size}, ${classes} classes: ${bytes.length.toLocaleString("en-US")} bytes, ` +
      `max |diff| ${abs.toExponential(2)}, max relative ${rel.toExponential(2)}`,
  );
  await session.release();
  model.dispose();
}
