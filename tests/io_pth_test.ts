/**
 * PyTorch checkpoints (`.pth`): the four models' deterministic state dicts as `torch.save` wrote
 * them give exactly the logits of the same weights read from safetensors; small real files check
 * views, dtypes, wrapped state dicts and every refusal, each a one-line error.
 */
import assert from "node:assert/strict";
import { tf, unzipSync, zipSync } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { createModel } from "../models/registry.ts";
import { loadWeights, stateDict, stateEntries, torchShape } from "../models/weights.ts";
import { parsePth } from "../io/pth.ts";
import { type SafeTensor, serializeSafetensors } from "../io/safetensors.ts";
import { UserError } from "../util/errors.ts";
import { detInput, detStateValue, nchwToNhwc } from "../bench/det.ts";
import { readPthFixture, readSkeleton, rebuildPth } from "./support/pth.ts";

// Loading does not depend on the backend; tfjs's cpu backend runs these models fastest here.
await initBackend({ backend: "cpu", log: null });

const INPUT_SIZE: Record<string, number> = { regnet400mf: 64 };

async function logits(model: tf.LayersModel, size: number): Promise<Float32Array> {
  const shape = [2, 3, size, size];
  const x = tf.tensor4d(nchwToNhwc(detInput("input.a", shape), shape), [2, size, size, 3]);
  const y = tf.tidy(() => model.predict(x) as tf.Tensor);
  const v = await y.data() as Float32Array;
  tf.dispose([x, y]);
  return v;
}

for (
  const stem of [
    "resnet20",
    "resnet20-convrnn",
    "resnet20-convgru",
    "regnet400mf",
    "resnet20-dataparallel",
  ]
) {
  Deno.test(`.pth from torch.save: ${stem} gives the logits of the same safetensors`, async () => {
    const skeleton = await readSkeleton(stem);
    const size = INPUT_SIZE[skeleton.model] ?? 32;
    const options = { numClasses: skeleton.num_classes, inputSize: size };
    const fromPth = createModel(skeleton.model, { ...options, seed: 1 });
    const fromSafe = createModel(skeleton.model, { ...options, seed: 2 });
    const shapes = new Map(stateEntries(fromPth).map((e) => [e.name, torchShape(e)]));
    const pth = await rebuildPth(skeleton, shapes);

    const report = await loadWeights(fromPth, pth);
    assert.equal(report.loaded.length, shapes.size);
    if (skeleton.wrap === "module") assert.match(report.notes.join("\n"), /prefix "module\."/);
    else if (skeleton.wrap) {
      assert.deepEqual(report.notes, [
        `read the state dict under "${skeleton.wrap}" (the file also holds epoch, best_acc)`,
      ]);
    } else assert.deepEqual(report.notes, []);

    const safe = new Map<string, SafeTensor>();
    for (const [name, shape] of shapes) {
      const data = detStateValue(name, shape);
      safe.set(name, { dtype: data instanceof BigInt64Array ? "I64" : "F32", shape, data });
    }
    await loadWeights(fromSafe, serializeSafetensors(safe));

    const [a, b] = [await stateDict(fromPth), await stateDict(fromSafe)];
    for (const [name, t] of a) assert.deepEqual(t.data, b.get(name)!.data, name);
    const [la, lb] = [await logits(fromPth, size), await logits(fromSafe, size)];
    assert.deepEqual(la, lb);
    assert.ok(la.some((v) => v !== 0));
    fromPth.dispose();
    fromSafe.dispose();
  });
}

interface Expected {
  dtype: string;
  shape: number[];
  stride: number[];
  storage_offset: number;
  values: number[];
}

Deno.test(".pth views and dtypes read as torch reads them", async () => {
  const expected: Record<string, Expected> = JSON.parse(
    new TextDecoder().decode(await readPthFixture("views.json")),
  );
  // The fixture holds what it should: offsets, non-contiguous strides, a broadcast.
  assert.equal(expected.offset.storage_offset, 5);
  assert.deepEqual(expected.transposed.stride, [1, 6]);
  assert.deepEqual(expected.strided.stride, [6, 2]);
  assert.deepEqual(expected.broadcast.stride, [0, 1]);
  const { tensors, notes } = parsePth(await readPthFixture("views.pth"), "views.pth");
  assert.deepEqual(notes, []);
  assert.deepEqual([...tensors.keys()], Object.keys(expected));
  const dtypes: Record<string, string> = {
    float32: "F32",
    float16: "F16",
    bfloat16: "BF16",
    float64: "F64",
    int64: "I64",
  };
  for (const [name, want] of Object.entries(expected)) {
    const t = tensors.get(name)!;
    assert.equal(t.dtype, dtypes[want.dtype], name);
    assert.deepEqual(t.shape, want.shape, name);
    const got = Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
    assert.deepEqual(got, want.values, name);
  }
  assert.equal((tensors.get("long")!.data as BigInt64Array)[2], 2n ** 40n);
});

/** Asserts that `fn` rejects with a one-line UserError matching `pattern`. */
async function rejectsOneLine(fn: () => Promise<unknown>, pattern: RegExp) {
  await assert.rejects(fn, (e: Error) => {
    assert.ok(e instanceof UserError, `${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"), e.message);
    return true;
  });
}

Deno.test(".pth files that are not plain tensor dicts are one-line errors", async () => {
  await Deno.mkdir(".test-tmp", { recursive: true });
  const dir = await Deno.makeTempDir({ dir: ".test-tmp" });
  const model = createModel("resnet20", { seed: 1 });
  const views = await readPthFixture("views.pth");
  const write = async (name: string, bytes: Uint8Array) => {
    await Deno.writeFile(`${dir}/${name}`, bytes);
    return `${dir}/${name}`;
  };
  try {
    // A pickle that calls os.system when Python unpickles it: refused, nothing run.
    await rejectsOneLine(
      async () =>
        loadWeights(model, await write("evil.pth", await readPthFixture("forbidden-global.pth"))),
      /evil\.pth: refused: the pickle names the global posix\.system, .*nothing was executed$/,
    );
    await rejectsOneLine(
      async () => loadWeights(model, await write("old.pth", await readPthFixture("legacy.pth"))),
      /old\.pth: a PyTorch checkpoint in the legacy format of torch < 1\.6/,
    );
    await rejectsOneLine(
      async () => loadWeights(model, await write("cut.pth", views.slice(0, views.length - 100))),
      /cut\.pth: not a readable PyTorch checkpoint \(truncated or corrupt zip archive/,
    );
    await rejectsOneLine(
      async () => loadWeights(model, await write("text.pth", new TextEncoder().encode("hello"))),
      /text\.pth: not a PyTorch checkpoint \(not a zip archive/,
    );
    // An archive whose storage record is gone, and one whose storage is shorter than a view.
    const files = unzipSync(views);
    const dropped = Object.fromEntries(
      Object.entries(files).filter(([k]) => k !== "views/data/0"),
    );
    await rejectsOneLine(
      async () => loadWeights(model, await write("lost.pth", zipSync(dropped))),
      /lost\.pth: corrupt checkpoint: storage record data\/0 is missing/,
    );
    const short = { ...files, "views/data/0": files["views/data/0"].slice(0, 40) };
    await rejectsOneLine(
      async () => loadWeights(model, await write("short.pth", zipSync(short))),
      /short\.pth: tensor "offset" \[2,3\] with strides \[3,1\] at offset 5 reaches past its storage of 10 elements/,
    );
    // A crafted pickle whose BUILD opcode tries to change a checked tensor's size afterwards.
    const ascii = (t: string) => [...t].map((c) => c.charCodeAt(0));
    const str = (t: string) => [0x58, t.length, 0, 0, 0, ...ascii(t)]; // BINUNICODE
    const pickle = new Uint8Array([
      ...[0x80, 2, 0x7d], // PROTO 2, EMPTY_DICT
      ...str("w"),
      ...ascii("ctorch._utils\n_rebuild_tensor_v2\n"),
      ...[0x28, 0x28, ...str("storage"), ...ascii("ctorch\nFloatStorage\n")],
      ...[...str("0"), ...str("cpu"), 0x4b, 2, 0x74, 0x51], // 2 elements, TUPLE, BINPERSID
      ...[0x4b, 0, 0x4b, 2, 0x85, 0x4b, 1, 0x85, 0x74, 0x52], // offset 0, (2,), (1,), REDUCE
      ...[0x7d, ...str("size"), 0x5d, 0x4b, 255, 0x61, 0x73, 0x62], // {size: [255]}, BUILD
      ...[0x73, 0x2e], // SETITEM, STOP
    ]);
    const crafted = zipSync({ "t/data.pkl": pickle, "t/data/0": new Uint8Array(8) });
    await rejectsOneLine(
      async () => loadWeights(model, await write("crafted.pth", crafted)),
      /crafted\.pth: not a plain tensor dict \(its pickle does not read: /,
    );
    // A real tensor dict that is not this model's: listed as for safetensors.
    await rejectsOneLine(
      async () => loadWeights(model, await write("views.pth", views)),
      /views\.pth: does not fit model "resnet20": missing .*; unexpected .*offset/,
    );
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
