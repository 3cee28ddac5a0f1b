import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import {
  canonicalModelName,
  countParams,
  createModel,
  MODEL_CHOICES,
  MODEL_NAMES,
  MODELS,
  modelSpec,
  modelSummary,
} from "../models/registry.ts";
import { resolveConfig } from "../training/config.ts";
import { REGNET_CONFIGS, regnetStages } from "../models/regnet.ts";
import { ConvRecurrentCell } from "../models/layers.ts";
import { loadWeights, saveWeights, stateDict } from "../models/weights.ts";
import { parseSafetensors, serializeSafetensors } from "../io/safetensors.ts";
import { loadLayersModel, saveLayersModel } from "../models/tfjs_io.ts";
import { SGD } from "../training/optimizer.ts";
import { trainStep } from "../training/step.ts";
import { UserError } from "../util/errors.ts";

await initBackend({ log: null });

Deno.test("parameter counts match PyTorch's", () => {
  const cases: [string, number, number, number][] = [
    ["resnet20", 10, 32, 272_474],
    ["resnet20-convrnn", 10, 32, 563_114],
    ["resnet20-convgru", 10, 32, 1_289_546],
    ["regnet400mf", 10, 64, 3_907_554],
    ["regnet400mf", 4, 64, 3_904_908],
    ["regnet400mf", 1000, 64, 4_344_144],
  ];
  for (const [name, numClasses, inputSize, params] of cases) {
    const model = createModel(name, { numClasses, inputSize });
    assert.equal(countParams(model), params, `${name} at ${numClasses} classes`);
    model.dispose();
  }
});

Deno.test("RegNet stages are derived as torchvision derives them", () => {
  const stages = regnetStages(REGNET_CONFIGS.regnet400mf);
  assert.deepEqual(stages.map((s) => s.width), [48, 104, 208, 440]);
  assert.deepEqual(stages.map((s) => s.depth), [1, 3, 6, 6]);
  const s800 = regnetStages(REGNET_CONFIGS.regnet800mf);
  assert.deepEqual(s800.map((s) => s.width), [64, 144, 320, 784]);
  assert.deepEqual(s800.map((s) => s.depth), [1, 3, 8, 2]);
});

Deno.test("an unknown model is an error listing the valid names", () => {
  assert.throws(
    () => createModel("resnet21"),
    (e: Error) => e instanceof UserError && e.message.includes(MODEL_NAMES.join(", ")),
  );
});

Deno.test("torchvision's names are taken beside ours, and stored as ours", () => {
  assert.equal(canonicalModelName("regnet_y_400mf"), "regnet400mf");
  assert.equal(canonicalModelName("resnet20"), "resnet20");
  assert.equal(modelSpec("regnet_y_800mf"), MODELS.regnet800mf);
  assert.equal(resolveConfig("regnet_y_400mf", {}).model, "regnet400mf");
  assert.ok(MODEL_CHOICES.includes("regnet_y_400mf") && MODEL_CHOICES.includes("regnet_y_800mf"));
  const model = createModel("regnet_y_400mf", { numClasses: 4, inputSize: 64 });
  const ours = createModel("regnet400mf", { numClasses: 4, inputSize: 64 });
  assert.equal(countParams(model), countParams(ours));
  assert.equal(model.name, ours.name);
  model.dispose();
  ours.dispose();
  assert.throws(
    () => modelSpec("regnet_y_1_6gf"),
    (e: Error) => e instanceof UserError && e.message.includes("regnet_y_400mf"),
  );
});

Deno.test("summary lists PyTorch names and the total", () => {
  const model = createModel("resnet20");
  const text = modelSummary(model);
  assert.match(text, /layer2\.0\.shortcut\.0/);
  assert.match(text, /272,474 trainable parameters/);
  model.dispose();
});

Deno.test("the hidden state flows within a stage and resets at each stage's first block", () => {
  const model = createModel("resnet20-convgru");
  const cells = model.layers.filter((l) => l instanceof ConvRecurrentCell);
  assert.equal(cells.length, 9);
  for (const cell of cells) {
    const inbound = cell.inboundNodes[0].inboundLayers.map((l) => l.name);
    const first = /\.0\.rnn$/.test(cell.name);
    // Block 0 of a stage gets no hidden state (zeros, the reference code's reset); the others get the
    // previous block's cell output.
    assert.equal(inbound.length, first ? 1 : 2, cell.name);
    if (!first) {
      const [stage, block] = cell.name.match(/layer(\d)\.(\d)/)!.slice(1).map(Number);
      assert.equal(inbound[1], `layer${stage}.${block - 1}.rnn`);
    }
  }
  // A hidden state of the wrong width is reset to zeros, as the reference code's cells do.
  const cell = cells[1] as ConvRecurrentCell;
  const x = tf.randomNormal([1, 32, 32, 16]);
  const zeros = tf.zeros([1, 32, 32, 16]);
  const wrongWidth = tf.randomNormal([1, 32, 32, 8]);
  const a = cell.apply([x, zeros]) as tf.Tensor, b = cell.apply([x, wrongWidth]) as tf.Tensor;
  const c = cell.apply([x]) as tf.Tensor;
  const diff = tf.tidy(() => tf.add(a.sub(b).abs().max(), a.sub(c).abs().max()));
  return diff.data().then((d) => {
    assert.equal(d[0], 0);
    tf.dispose([x, zeros, wrongWidth, a, b, c, diff]);
    model.dispose();
  });
});

Deno.test("safetensors weights round-trip, and bad files name what is wrong", async () => {
  const a = createModel("resnet20-convrnn", { seed: 1 });
  const b = createModel("resnet20-convrnn", { seed: 2 });
  const bytes = await saveWeights(a);
  await loadWeights(b, bytes);
  const [sa, sb] = [await stateDict(a), await stateDict(b)];
  for (const [name, t] of sa) assert.deepEqual(sb.get(name)!.data, t.data, name);
  // PyTorch's layout and dtypes in the file.
  const parsed = parseSafetensors(bytes).tensors;
  assert.deepEqual(parsed.get("layer2.0.shortcut.0.weight")!.shape, [32, 16, 1, 1]);
  assert.deepEqual(parsed.get("linear.weight")!.shape, [10, 64]);
  assert.equal(parsed.get("bn1.num_batches_tracked")!.dtype, "I64");
  // Missing, unexpected and mis-shaped tensors are listed in one error.
  parsed.delete("conv1.weight");
  parsed.set("extra.weight", { dtype: "F32", shape: [1], data: new Float32Array(1) });
  parsed.set("linear.bias", { dtype: "F32", shape: [3], data: new Float32Array(3) });
  await assert.rejects(
    () => loadWeights(b, serializeSafetensors(parsed)),
    (e: Error) =>
      e instanceof UserError && /missing conv1\.weight/.test(e.message) &&
      /unexpected extra\.weight/.test(e.message) && /mis-shaped linear\.bias \[3\]/.test(e.message),
  );
  await assert.rejects(() => loadWeights(b, new Uint8Array([1, 2, 3])), /not a valid safetensors/);
  a.dispose();
  b.dispose();
});

Deno.test("weights without num_batches_tracked load with the count at 0, as in PyTorch", async () => {
  const a = createModel("resnet20", { seed: 1 });
  const b = createModel("resnet20", { seed: 2 });
  try {
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, "float32", 1) as tf.Tensor4D;
    await trainStep(a, new SGD({ lr: 0.1 }), x, tf.tensor1d([1, 2], "int32"));
    const full = parseSafetensors(await saveWeights(a)).tensors;
    assert.equal(full.get("bn1.num_batches_tracked")!.data[0], 1n);
    // An older PyTorch checkpoint: no batch counters.
    const old = new Map([...full].filter(([k]) => !k.endsWith("num_batches_tracked")));
    assert.ok(old.size < full.size);
    const report = await loadWeights(b, serializeSafetensors(old));
    assert.equal(report.loaded.length, full.size, "the counters count as loaded (set to 0)");
    assert.match(
      report.notes.join("\n"),
      /batch counters \(num_batches_tracked\) absent: set to 0/,
    );
    const got = await stateDict(b);
    for (const [name, t] of full) {
      if (name.endsWith("num_batches_tracked")) assert.equal(got.get(name)!.data[0], 0n, name);
      else assert.deepEqual(got.get(name)!.data, t.data, name);
    }
    // Any other BatchNorm tensor stays required.
    old.delete("bn1.running_mean");
    await assert.rejects(
      () => loadWeights(b, serializeSafetensors(old)),
      (e: Error) =>
        e instanceof UserError && /missing bn1\.running_mean/.test(e.message) &&
        !/num_batches_tracked/.test(e.message),
    );
    x.dispose();
  } finally {
    a.dispose();
    b.dispose();
  }
});

Deno.test("a truncated safetensors file says so, with the bytes expected and found", async () => {
  const model = createModel("resnet20", { seed: 1 });
  try {
    const bytes = await saveWeights(model);
    const cut = bytes.subarray(0, bytes.length - 1000);
    await assert.rejects(
      () => loadWeights(model, cut),
      (e: Error) => {
        assert.ok(e instanceof UserError, String(e));
        assert.equal(
          e.message,
          `weights: truncated file: expected ${bytes.length} bytes, has ${cut.length}`,
        );
        return true;
      },
    );
    // Cut inside the header: the header's own length is the least the file must have.
    const headerEnd = 8 +
      Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    await assert.rejects(
      () => loadWeights(model, bytes.subarray(0, 100)),
      (e: Error) =>
        e instanceof UserError && e.message ===
          `weights: truncated file: expected at least ${headerEnd} bytes (its header alone), has 100`,
    );
  } finally {
    model.dispose();
  }
});

Deno.test("models save and load in the TensorFlow.js LayersModel format", async () => {
  await Deno.mkdir(".test-tmp", { recursive: true });
  const dir = await Deno.makeTempDir({ dir: ".test-tmp" });
  try {
    for (const name of ["resnet20-convgru", "regnet400mf"]) {
      const size = name === "regnet400mf" ? 64 : 32;
      const model = createModel(name, { numClasses: 4, inputSize: size, seed: 3 });
      await saveLayersModel(model, `${dir}/${name}`);
      const loaded = await loadLayersModel(`${dir}/${name}`);
      const x = tf.randomNormal([2, size, size, 3]);
      const diff = tf.tidy(() =>
        (model.predict(x) as tf.Tensor).sub(loaded.predict(x) as tf.Tensor).abs().max()
      );
      assert.ok((await diff.data())[0] < 1e-5, name);
      tf.dispose([x, diff]);
      model.dispose();
      loaded.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mod.ts loads by file:// URL from a folder without our deno.json", async () => {
  await Deno.mkdir(".test-tmp", { recursive: true });
  const dir = await Deno.makeTempDir({ dir: ".test-tmp" });
  try {
    const url = new URL("../mod.ts", import.meta.url).href;
    const code = `import { countParams, createModel, MODEL_NAMES, tf } from "${url}";
      await tf.setBackend("cpu");
      console.log(MODEL_NAMES.length, countParams(createModel("resnet20")));`;
    const out = await new Deno.Command("deno", {
      args: ["eval", "--no-config", "--no-lock", code],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /^7 272474$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("no tensor leaks across 20 training steps", async () => {
  const model = createModel("resnet20", { seed: 4 });
  const opt = new SGD({ lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
  const x = tf.randomNormal([2, 32, 32, 3]) as tf.Tensor4D;
  const y = tf.tensor1d([1, 8], "int32");
  const first = await trainStep(model, opt, x, y); // creates the momentum buffers
  const before = tf.memory().numTensors;
  let last = Infinity;
  for (let i = 0; i < 20; i++) last = await trainStep(model, opt, x, y);
  assert.equal(tf.memory().numTensors, before);
  assert.ok(last < first / 2, `loss went from ${first} to ${last} on a repeated batch`);
  tf.dispose([x, y]);
  opt.dispose();
  model.dispose();
});
