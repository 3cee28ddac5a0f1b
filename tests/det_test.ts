import assert from "node:assert/strict";
import {
  detInput,
  detLabels,
  detStateValue,
  detUniform,
  fnv1a32,
  nchwToNhwc,
  numelOf,
  sampleIndices,
} from "../bench/det.ts";

const MODELS = ["resnet20", "resnet20-convrnn", "resnet20-convgru", "regnet400mf"] as const;

interface Summary {
  shape: number[];
  sum: number;
  abs_sum: number;
  indices?: number[];
  values: number[];
}

interface DetCheck {
  uniform: { key: string; fnv1a32: number; values: number[] }[];
  uniform_long: { key: string; n: number; last: number; sum: number; min: number; max: number };
  state: (Summary & { key: string })[];
  inputs: {
    key: string;
    shape: number[];
    nchw: number[];
    nhwc: number[];
    input_a_32: Summary & { key: string };
  };
  labels: { key: string; n: number; num_classes: number; values: number[] }[];
}

interface Fixture {
  format: string;
  model: string;
  trainable_params: number;
  state_dict: [string, number[]][];
  parameters: string[];
  num_classes: number;
  input_shape: number[];
  labels_a: number[];
  labels_b: number[];
  logits_eval: number[][];
  logits_eval_after: number[][];
  grads: Record<string, Summary>;
  after: Record<string, Summary>;
  det_check?: DetCheck;
}

async function loadFixture(name: string): Promise<Fixture> {
  const url = new URL(`./fixtures/${name}.json`, import.meta.url);
  return JSON.parse(await Deno.readTextFile(url)) as Fixture;
}

/** The picked values of a flat array, in the summary's order. */
function picked(flat: ArrayLike<number>, s: Summary): number[] {
  const idx = s.indices ?? Array.from({ length: flat.length }, (_, i) => i);
  return idx.map((i) => flat[i]);
}

function closeTo(actual: number, expected: number, rel: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= rel * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} vs ${expected}`,
  );
}

Deno.test("det: FNV-1a and xorshift values equal the Python generator bit for bit", async () => {
  const check = (await loadFixture("resnet20")).det_check!;
  assert.ok(
    check.uniform.some((u) => new TextEncoder().encode(u.key).length > u.key.length),
    "a non-ASCII key is checked",
  );
  for (const u of check.uniform) {
    assert.equal(fnv1a32(u.key), u.fnv1a32, `fnv1a32(${JSON.stringify(u.key)})`);
    assert.deepEqual(Array.from(detUniform(u.key, u.values.length)), u.values, u.key);
  }
  const l = check.uniform_long;
  const v = detUniform(l.key, l.n);
  assert.equal(v[l.n - 1], l.last);
  assert.equal(v.reduce((a, b) => Math.min(a, b)), l.min);
  assert.equal(v.reduce((a, b) => Math.max(a, b)), l.max);
  closeTo(v.reduce((a, b) => a + b, 0), l.sum, 1e-12, "sum");
  assert.ok(l.min >= -1 && l.max < 1);
});

Deno.test("det: state-dict values, inputs and labels equal the Python generator", async () => {
  const check = (await loadFixture("resnet20")).det_check!;
  for (const s of check.state) {
    const value = detStateValue(s.key, s.shape);
    assert.equal(value.length, numelOf(s.shape), s.key);
    if (value instanceof BigInt64Array) {
      assert.ok(s.key.endsWith("num_batches_tracked"));
      assert.deepEqual(picked(Array.from(value, Number), s), s.values);
      continue;
    }
    assert.deepEqual(picked(value, s), s.values, s.key);
    closeTo(value.reduce((a, b) => a + b, 0), s.sum, 1e-12, `${s.key} sum`);
    closeTo(value.reduce((a, b) => a + Math.abs(b), 0), s.abs_sum, 1e-12, `${s.key} abs_sum`);
  }
  assert.throws(() => detStateValue("layer.unknown", [3]), /valid suffixes/);

  const inp = check.inputs;
  const nchw = detInput(inp.key, inp.shape);
  assert.deepEqual(Array.from(nchw), inp.nchw);
  assert.deepEqual(Array.from(nchwToNhwc(nchw, inp.shape)), inp.nhwc);
  const a = inp.input_a_32;
  const xa = detInput(a.key, a.shape);
  assert.deepEqual(a.indices, sampleIndices(xa.length));
  assert.deepEqual(picked(xa, a), a.values);

  for (const lab of check.labels) {
    const got = detLabels(lab.key, lab.n, lab.num_classes);
    assert.deepEqual(Array.from(got), lab.values, lab.key);
    assert.ok(got.every((c) => c >= 0 && c < lab.num_classes));
  }
});

Deno.test("det: nchwToNhwc moves channels last", () => {
  // N=1, C=2, H=1, W=2: channel planes [1, 2] and [3, 4] interleave per pixel.
  assert.deepEqual(Array.from(nchwToNhwc(new Float32Array([1, 2, 3, 4]), [1, 2, 1, 2])), [
    1,
    3,
    2,
    4,
  ]);
  assert.throws(() => nchwToNhwc(new Float32Array(3), [1, 2, 1, 2]), RangeError);
});

Deno.test("fixtures: consistent with the det rules and exactly float32", async () => {
  for (const name of MODELS) {
    const fx = await loadFixture(name);
    assert.equal(fx.format, "regnet-fixture-v1");
    assert.equal(fx.model, name);
    const shapes = new Map(fx.state_dict);
    // trainable_params is the element count of the listed parameters
    const count = fx.parameters.reduce((n, p) => n + numelOf(shapes.get(p)!), 0);
    assert.equal(count, fx.trainable_params, name);
    assert.deepEqual(Object.keys(fx.grads), fx.parameters);
    assert.deepEqual(Object.keys(fx.after), fx.state_dict.map(([k]) => k));
    const n = fx.input_shape[0];
    assert.deepEqual(Array.from(detLabels("labels.a", n, fx.num_classes)), fx.labels_a);
    assert.deepEqual(Array.from(detLabels("labels.b", n, fx.num_classes)), fx.labels_b);
    assert.equal(fx.logits_eval.length, n);
    for (const [key, shape] of fx.state_dict) {
      const s = fx.after[key];
      assert.deepEqual(s.shape, shape, key);
      const numel = numelOf(shape);
      if (numel > 64) assert.deepEqual(s.indices, sampleIndices(numel), key);
      else assert.equal(s.values.length, numel, key);
      if (key.endsWith("num_batches_tracked")) assert.deepEqual(s.values, [2], key);
      else for (const v of s.values) assert.equal(Math.fround(v), v, key);
    }
    for (const row of [...fx.logits_eval, ...fx.logits_eval_after]) {
      for (const v of row) assert.equal(Math.fround(v), v);
    }
    // every state-dict entry has a deterministic initial value of the right size
    for (const [key, shape] of fx.state_dict.slice(0, 12)) {
      assert.equal(detStateValue(key, shape).length, numelOf(shape), key);
    }
  }
});
