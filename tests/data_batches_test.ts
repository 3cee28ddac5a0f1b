import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { augmentImages } from "../data/augment.ts";
import {
  type Batch,
  batchCount,
  type BatchOptions,
  iterateBatches,
  normalizePixels,
} from "../data/batches.ts";
import { type ImageDataset, makeDataset } from "../data/dataset.ts";
import { Rng } from "../util/rng.ts";

await initBackend({ backend: "cpu", log: null });

/** `n` images of `side x side`; image i's pixel p, channel c holds `(i * 16 + p + 90 * c) & 255`. */
function toyDataset(n: number, side = 4): ImageDataset {
  const per = side * side * 3;
  const pixels = new Uint8Array(n * per);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < side * side; p++) {
      for (let c = 0; c < 3; c++) pixels[i * per + p * 3 + c] = (i * 16 + p + 90 * c) & 255;
    }
  }
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 3) % 5);
  return makeDataset({
    classNames: ["a", "b", "c", "d", "e"],
    size: n,
    height: side,
    width: side,
    pixels,
    labels,
    source: "toy",
  });
}

const norm = (p: number) => Math.fround(Math.fround(Math.fround(p / 255) - 0.5) / 0.5);

/** Reads every batch to host arrays and disposes the tensors. */
async function collect(ds: ImageDataset, opts: BatchOptions) {
  const out: {
    x: Float32Array;
    y: Int32Array;
    shape: number[];
    indices: number[];
    size: number;
  }[] = [];
  for await (const b of iterateBatches(ds, opts)) {
    out.push({
      x: (await b.x.data()) as Float32Array,
      y: (await b.y.data()) as Int32Array,
      shape: b.x.shape,
      indices: Array.from(b.indices),
      size: b.size,
    });
    assert.equal(b.x.dtype, "float32");
    assert.equal(b.y.dtype, "int32");
    b.x.dispose();
    b.y.dispose();
  }
  return out;
}

Deno.test("normalizePixels: (p/255 - 0.5)/0.5 in float32", () => {
  const out = normalizePixels(new Uint8Array([0, 255, 128, 1]));
  assert.deepEqual(Array.from(out), [-1, 1, norm(128), norm(1)]);
  assert.ok(Math.abs(out[2] - 0.003921568) < 1e-6);
});

Deno.test("batches: shapes, values, labels, last partial batch, dropLast", async () => {
  const ds = toyDataset(10);
  const start = tf.memory().numTensors;
  const batches = await collect(ds, { batchSize: 4, shuffle: false, seed: 0, epoch: 0 });
  assert.deepEqual(batches.map((b) => b.shape), [[4, 4, 4, 3], [4, 4, 4, 3], [2, 4, 4, 3]]);
  assert.deepEqual(batches.map((b) => b.size), [4, 4, 2]);
  assert.deepEqual(batches.flatMap((b) => b.indices), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(Array.from(batches[2].y), [ds.labels[8], ds.labels[9]]);
  const b1 = batches[1];
  for (let j = 0; j < 4; j++) {
    const i = b1.indices[j];
    for (const k of [0, 7, 47]) assert.equal(b1.x[j * 48 + k], norm(ds.pixels[i * 48 + k]));
  }
  assert.equal(batchCount(ds, { batchSize: 4 }), 3);
  assert.equal(batchCount(ds, { batchSize: 4, dropLast: true }), 2);
  const dropped = await collect(ds, {
    batchSize: 4,
    shuffle: false,
    seed: 0,
    epoch: 0,
    dropLast: true,
  });
  assert.deepEqual(dropped.map((b) => b.size), [4, 4]);
  assert.equal(tf.memory().numTensors, start, "no tensor left behind");
});

Deno.test("batches: order depends only on (seed, epoch); each index once per epoch", async () => {
  const ds = toyDataset(37);
  const order = async (seed: number, epoch: number) =>
    (await collect(ds, { batchSize: 8, shuffle: true, seed, epoch })).flatMap((b) => b.indices);
  const a = await order(5, 0);
  assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 37 }, (_, i) => i));
  assert.notDeepEqual(a, Array.from({ length: 37 }, (_, i) => i), "shuffled");
  assert.deepEqual(await order(5, 0), a, "same seed and epoch, same order");
  const e1 = await order(5, 1);
  assert.notDeepEqual(e1, a, "another epoch, another order");
  assert.deepEqual([...e1].sort((x, y) => x - y), Array.from({ length: 37 }, (_, i) => i));
  assert.notDeepEqual(await order(6, 0), a, "another seed, another order");
  // Labels follow their images through the shuffle.
  const [first] = await collect(ds, { batchSize: 8, shuffle: true, seed: 5, epoch: 0 });
  assert.deepEqual(Array.from(first.y), first.indices.map((i) => ds.labels[i]));
});

Deno.test("augmentImages: each output is its image shifted by at most 4 (zero fill), maybe mirrored", () => {
  const side = 8, n = 60, per = side * side * 3;
  const src = new Uint8Array(n * per);
  for (let i = 0; i < src.length; i++) src[i] = 1 + (i % 250); // no zeros, so padding shows
  const dst = augmentImages(src, { count: n, height: side, width: side, rng: new Rng(3) });
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    let match: string | null = null;
    for (let dy = -4; dy <= 4 && !match; dy++) {
      for (let dx = -4; dx <= 4 && !match; dx++) {
        for (const flip of [false, true]) {
          let ok = true;
          for (let y = 0; y < side && ok; y++) {
            for (let x = 0; x < side && ok; x++) {
              const sx = (flip ? side - 1 - x : x) + dx, sy = y + dy;
              for (let c = 0; c < 3; c++) {
                const want = sx < 0 || sy < 0 || sx >= side || sy >= side
                  ? 0
                  : src[i * per + (sy * side + sx) * 3 + c];
                if (dst[i * per + (y * side + x) * 3 + c] !== want) ok = false;
              }
            }
          }
          if (ok) {
            match = `${dx},${dy},${flip}`;
            break;
          }
        }
      }
    }
    assert.ok(match !== null, `image ${i} is a padded crop / flip of its source`);
    seen.add(match);
  }
  assert.ok(seen.size > 20, "shifts and flips vary between images");
  assert.ok(
    [...seen].some((s) => s.endsWith("true")) && [...seen].some((s) => s.endsWith("false")),
  );
  const again = augmentImages(src, { count: n, height: side, width: side, rng: new Rng(3) });
  assert.deepEqual(again, dst, "seeded");
});

Deno.test("batches: augmentation changes pixels, keeps shapes, is seeded by (seed, epoch)", async () => {
  const ds = toyDataset(16, 8);
  const opts = { batchSize: 16, shuffle: false, seed: 9, epoch: 0 };
  const [plain] = await collect(ds, opts);
  const [aug] = await collect(ds, { ...opts, augment: true });
  const [aug2] = await collect(ds, { ...opts, augment: true });
  const [aug3] = await collect(ds, { ...opts, augment: true, epoch: 1 });
  assert.deepEqual(aug.shape, plain.shape);
  assert.notDeepEqual(aug.x, plain.x);
  assert.deepEqual(aug2.x, aug.x);
  assert.notDeepEqual(aug3.x, aug.x);
  assert.ok(aug.x.some((v) => v === -1), "zero padding appears as -1");
});

Deno.test("batches: resized on the backend to inputSize", async () => {
  const ds = toyDataset(3);
  const [b] = await collect(ds, { batchSize: 3, shuffle: false, seed: 0, epoch: 0, inputSize: 8 });
  assert.deepEqual(b.shape, [3, 8, 8, 3]);
  // Half-pixel centers: output corner (0, 0) maps inside input pixel (0, 0) and keeps its value.
  assert.ok(Math.abs(b.x[0] - norm(ds.pixels[0])) < 1e-6);
  const last = (8 * 8 - 1) * 3;
  assert.ok(Math.abs(b.x[2 * 192 + last] - norm(ds.pixels[2 * 48 + 15 * 3])) < 1e-6);
});

Deno.test("batches: leaving early disposes the prefetched batch; no tensor leaks", async () => {
  const ds = toyDataset(20);
  const start = tf.memory().numTensors;
  let seen = 0;
  for await (
    const b of iterateBatches(ds, { batchSize: 4, shuffle: true, seed: 1, epoch: 0, inputSize: 6 })
  ) {
    seen++;
    const kept: Batch = b;
    // The consumer awaits GPU reads: the next batch gets prepared meanwhile.
    await kept.x.data();
    kept.x.dispose();
    kept.y.dispose();
    if (seen === 2) break;
  }
  assert.equal(seen, 2);
  assert.equal(tf.memory().numTensors, start);
});

Deno.test("batches: batch k+1 is prepared while the consumer awaits batch k", async () => {
  const ds = toyDataset(12);
  const it = iterateBatches(ds, { batchSize: 4, shuffle: false, seed: 0, epoch: 0 });
  const first = (await it.next()).value as Batch;
  const before = tf.memory().numTensors;
  await new Promise((resolve) => setTimeout(resolve, 10)); // the consumer waits on the GPU
  assert.equal(tf.memory().numTensors, before + 2, "next batch's x and y already uploaded");
  first.x.dispose();
  first.y.dispose();
  for (let r = await it.next(); !r.done; r = await it.next()) {
    r.value.x.dispose();
    r.value.y.dispose();
  }
});

Deno.test("batches: a scope closed by the consumer does not dispose handed-out batches", async () => {
  const ds = toyDataset(8);
  const it = iterateBatches(ds, { batchSize: 4, shuffle: false, seed: 0, epoch: 0 });
  tf.engine().startScope();
  const a = (await it.next()).value as Batch;
  await new Promise((resolve) => setTimeout(resolve, 5)); // prefetch runs inside the scope
  tf.engine().endScope();
  const b = (await it.next()).value as Batch;
  assert.ok(!a.x.isDisposed && !b.x.isDisposed && !b.y.isDisposed);
  assert.equal((await b.x.data()).length, 4 * 48);
  for (const t of [a.x, a.y, b.x, b.y]) t.dispose();
  assert.ok((await it.next()).done);
});

Deno.test("batches: a pass started at batch k hands out the same batches as a full pass", async () => {
  const ds = toyDataset(23, 6);
  const opts = { batchSize: 5, shuffle: true, seed: 11, epoch: 3, augment: true };
  const collect = async (startBatch: number) => {
    const out: { indices: number[]; x: Float32Array }[] = [];
    for await (const b of iterateBatches(ds, { ...opts, startBatch })) {
      out.push({ indices: [...b.indices], x: await b.x.data() as Float32Array });
      b.x.dispose();
      b.y.dispose();
    }
    return out;
  };
  const full = await collect(0);
  const tail = await collect(2);
  assert.equal(full.length, 5);
  assert.deepEqual(tail, full.slice(2));
});
