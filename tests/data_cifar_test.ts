import assert from "node:assert/strict";
import { join } from "node:path";
import { cifarRecordSize, loadCifar, readCifarFile } from "../data/cifar.ts";
import { classCounts, takeFirst } from "../data/dataset.ts";
import { UserError } from "../util/errors.ts";
import { cifarBytes, cifarPixel, tempDir } from "./data_testutil.ts";

Deno.test("CIFAR-10 records: labels and R, G, B planes land at their HWC places", async () => {
  const dir = await tempDir();
  try {
    const labels = [3, 0, 9, 3, 1];
    const bytes = cifarBytes(labels);
    // Record 2: one marked pixel at (y=2, x=5) with distinct R, G, B values.
    const rec = cifarRecordSize("cifar10");
    const p = 2 * 32 + 5;
    bytes[2 * rec + 1 + p] = 201;
    bytes[2 * rec + 1 + 1024 + p] = 202;
    bytes[2 * rec + 1 + 2048 + p] = 203;
    const path = join(dir, "test_batch.bin");
    await Deno.writeFile(path, bytes);
    const ds = await readCifarFile(path, { variant: "cifar10" });
    assert.equal(ds.size, 5);
    assert.equal(ds.height, 32);
    assert.equal(ds.width, 32);
    assert.deepEqual(Array.from(ds.labels), labels);
    assert.equal(ds.pixels.length, 5 * 3072);
    const o = 2 * 3072 + p * 3;
    assert.deepEqual(Array.from(ds.pixels.subarray(o, o + 3)), [201, 202, 203]);
    // Every other pixel of every record matches its plane.
    for (const i of [0, 4]) {
      for (const q of [0, 31, 32, 1023]) {
        for (let c = 0; c < 3; c++) {
          assert.equal(ds.pixels[i * 3072 + q * 3 + c], cifarPixel(i, c, q));
        }
      }
    }
    assert.equal(ds.classNames[3], "cat");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CIFAR-10 folder: batch files in order, per-class counts, names, partial set warned", async () => {
  const dir = await tempDir();
  try {
    const inner = join(dir, "cifar-10-batches-bin");
    await Deno.mkdir(inner);
    const l1 = Array.from({ length: 20 }, (_, i) => i % 10);
    const l3 = Array.from({ length: 10 }, (_, i) => (i * 3) % 10);
    await Deno.writeFile(join(inner, "data_batch_1.bin"), cifarBytes(l1));
    await Deno.writeFile(join(inner, "data_batch_3.bin"), cifarBytes(l3, undefined, 20));
    await Deno.writeFile(join(inner, "test_batch.bin"), cifarBytes([1, 1, 2]));
    const names = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"];
    await Deno.writeTextFile(join(inner, "batches.meta.txt"), names.join("\n") + "\n\n");
    const lines: string[] = [];
    // The parent folder works as well as the extracted folder itself.
    const train = await loadCifar(dir, {
      variant: "cifar10",
      split: "train",
      log: (l) => lines.push(l),
    });
    assert.equal(train.size, 30);
    assert.equal(train.source, inner);
    assert.deepEqual(Array.from(train.labels), [...l1, ...l3]);
    assert.deepEqual(classCounts(train), new Array(10).fill(3));
    assert.deepEqual(train.classNames, names);
    // The second file's first record follows the first file's last.
    assert.equal(train.pixels[20 * 3072 + 1], cifarPixel(20, 1, 0));
    assert.equal(lines.length, 1);
    assert.match(lines[0], /using 2 of 5 training batch files/);
    const test = await loadCifar(inner, {
      variant: "cifar10",
      split: "test",
      log: (l) => lines.push(l),
    });
    assert.deepEqual(Array.from(test.labels), [1, 1, 2]);
    assert.equal(lines.length, 1, "the test split warns nothing");
    const first = takeFirst(train, 4);
    assert.equal(first.size, 4);
    assert.equal(first.pixels.buffer, train.pixels.buffer, "takeFirst shares memory");
    assert.equal(first.pixels.length, 4 * 3072);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CIFAR-100: the fine label is used, 100 class names", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeFile(join(dir, "train.bin"), cifarBytes([99, 0, 42], [19, 4, 7]));
    const ds = await loadCifar(dir, { variant: "cifar100", split: "train", log: null });
    assert.deepEqual(Array.from(ds.labels), [99, 0, 42]);
    assert.equal(ds.classNames.length, 100);
    assert.equal(ds.classNames[99], "worm");
    assert.equal(ds.pixels[2 * 3072 + 2], cifarPixel(2, 2, 0));
    await assert.rejects(
      () => loadCifar(dir, { variant: "cifar100", split: "test", log: null }),
      (e) => e instanceof UserError && /test\.bin/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CIFAR bad input: size, label range, missing folder, each a UserError naming the file", async () => {
  const dir = await tempDir();
  try {
    const short = join(dir, "data_batch_1.bin");
    await Deno.writeFile(short, cifarBytes([1, 2]).subarray(0, 3073 + 100));
    await assert.rejects(
      () => readCifarFile(short, { variant: "cifar10" }),
      (e) =>
        e instanceof UserError && e.message.includes(short) &&
        /not a multiple of the 3073/.test(e.message),
    );
    const bad = join(dir, "test_batch.bin");
    const bytes = cifarBytes([1, 2, 3]);
    bytes[2 * 3073] = 10;
    await Deno.writeFile(bad, bytes);
    await assert.rejects(
      () => readCifarFile(bad, { variant: "cifar10" }),
      (e) =>
        e instanceof UserError && e.message.includes(bad) &&
        /record 2 has label 10/.test(e.message),
    );
    const bad100 = join(dir, "train.bin");
    await Deno.writeFile(bad100, cifarBytes([100], [3]));
    await assert.rejects(
      () => readCifarFile(bad100, { variant: "cifar100" }),
      (e) => e instanceof UserError && /label 100, expected 0\.\.99/.test(e.message),
    );
    const missing = join(dir, "nope");
    await assert.rejects(
      () => loadCifar(missing, { variant: "cifar10", split: "train", log: null }),
      (e) =>
        e instanceof UserError && e.message.includes(missing) && /does not exist/.test(e.message),
    );
    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    await assert.rejects(
      () => loadCifar(empty, { variant: "cifar10", split: "train", log: null }),
      (e) => e instanceof UserError && /no CIFAR-10 files/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CIFAR file larger than one read chunk is read whole", async () => {
  const dir = await tempDir();
  try {
    const labels = Array.from({ length: 1400 }, (_, i) => (i * 7) % 10);
    const path = join(dir, "data_batch_2.bin");
    await Deno.writeFile(path, cifarBytes(labels));
    const ds = await readCifarFile(path, { variant: "cifar10" });
    assert.deepEqual(Array.from(ds.labels), labels);
    for (const i of [0, 1364, 1365, 1399]) {
      assert.equal(ds.pixels[i * 3072 + 3 * 700 + 1], cifarPixel(i, 1, 700));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
