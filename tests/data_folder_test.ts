import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { jpeg } from "../deno_deps.ts";
import { encodePng } from "../deno_deps.ts";
import { classCounts } from "../data/dataset.ts";
import { loadImageFolder } from "../data/folder.ts";
import { UserError } from "../util/errors.ts";
import { tempDir } from "./data_testutil.ts";

function solidRgb(w: number, h: number, rgb: number[]): Uint8Array {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) data.set(rgb, i * 3);
  return data;
}

async function writePng(path: string, w: number, h: number, rgb: number[]): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(
    path,
    encodePng({ width: w, height: h, data: solidRgb(w, h, rgb), channels: 3 }),
  );
}

function jpegBytes(w: number, h: number, rgb: number[]): Uint8Array {
  const rgba = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) rgba.set([...rgb, 255], i * 4);
  return jpeg.encode({ data: rgba, width: w, height: h }, 95).data;
}

async function writeJpeg(path: string, w: number, h: number, rgb: number[]): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeFile(path, jpegBytes(w, h, rgb));
}

/** The color of image `i` of a loaded dataset (its top-left pixel). */
function colorOf(ds: { pixels: Uint8Array; height: number; width: number }, i: number): number[] {
  const o = i * ds.height * ds.width * 3;
  return Array.from(ds.pixels.subarray(o, o + 3));
}

Deno.test("image folder, train/test layout: sorted classes, recursive files, resized, warnings", async () => {
  const dir = await tempDir();
  try {
    await writePng(join(dir, "train/dog/d1.png"), 40, 30, [200, 10, 10]);
    await writeJpeg(join(dir, "train/dog/d2.jpg"), 20, 50, [10, 200, 10]);
    await writePng(join(dir, "train/cat/c1.png"), 7, 9, [1, 2, 3]);
    await writePng(join(dir, "train/cat/sub/c2.PNG"), 64, 64, [90, 90, 250]);
    await Deno.writeTextFile(join(dir, "train/cat/notes.txt"), "not an image");
    await writePng(join(dir, "test/cat/c3.png"), 33, 33, [5, 6, 7]);
    await writeJpeg(join(dir, "test/dog/d3.jpeg"), 16, 16, [240, 240, 0]);
    const lines: string[] = [];
    const train = await loadImageFolder(dir, {
      split: "train",
      inputSize: 16,
      log: (l) => lines.push(l),
    });
    assert.deepEqual(train.classNames, ["cat", "dog"]);
    assert.equal(train.size, 4);
    assert.equal(train.height, 16);
    assert.equal(train.width, 16);
    assert.equal(train.pixels.length, 4 * 16 * 16 * 3);
    assert.deepEqual(Array.from(train.labels), [0, 0, 1, 1]);
    assert.deepEqual(colorOf(train, 0), [1, 2, 3]); // cat/c1.png before cat/sub/c2.PNG
    assert.deepEqual(colorOf(train, 1), [90, 90, 250]);
    assert.deepEqual(colorOf(train, 2), [200, 10, 10]);
    // A solid image stays solid through the resize (last pixel too).
    const last = 2 * 768 + 765;
    assert.deepEqual(Array.from(train.pixels.subarray(last, last + 3)), [200, 10, 10]);
    const green = colorOf(train, 3);
    assert.ok(Math.abs(green[0] - 10) <= 4 && Math.abs(green[1] - 200) <= 4, `${green}`);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /ignored 1 file\(s\) that are not JPEG or PNG images: .*notes\.txt/);
    const test = await loadImageFolder(dir, { split: "test", inputSize: 8, log: null });
    assert.deepEqual(test.classNames, ["cat", "dog"]);
    assert.deepEqual(Array.from(test.labels), [0, 1]);
    assert.equal(test.height, 8);
    assert.deepEqual(colorOf(test, 0), [5, 6, 7]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image folder, one folder split by a seeded valSplit, classes sorted by code point", async () => {
  const dir = await tempDir();
  try {
    const classes = ["b_zebra", "a_ant", "B_upper"];
    for (const [k, name] of classes.entries()) {
      for (let i = 0; i < 5; i++) await writePng(join(dir, name, `${i}.png`), 6, 6, [k, i, 77]);
    }
    const opts = { inputSize: 4, valSplit: 0.4, seed: 3, log: null };
    const train = await loadImageFolder(dir, { ...opts, split: "train" });
    const test = await loadImageFolder(dir, { ...opts, split: "test" });
    assert.deepEqual(train.classNames, ["B_upper", "a_ant", "b_zebra"]);
    assert.deepEqual(classCounts(train), [3, 3, 3]);
    assert.deepEqual(classCounts(test), [2, 2, 2]);
    const ids = (ds: typeof train) =>
      Array.from({ length: ds.size }, (_, i) => colorOf(ds, i).slice(0, 2).join("/"));
    const all = [...ids(train), ...ids(test)].sort();
    assert.equal(new Set(all).size, 15, "train and test are disjoint and cover every image");
    // Labels follow the sorted class order: B_upper was written with k = 2.
    for (let i = 0; i < train.size; i++) {
      assert.equal(colorOf(train, i)[0], [2, 1, 0][train.labels[i]]);
    }
    const again = await loadImageFolder(dir, { ...opts, split: "test" });
    assert.deepEqual(ids(again), ids(test), "same seed, same split");
    const splits = new Set<string>();
    for (let seed = 0; seed < 6; seed++) {
      splits.add(ids(await loadImageFolder(dir, { ...opts, seed, split: "test" })).join());
    }
    assert.ok(splits.size > 1, "the seed changes the split");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image folder errors: missing folder, empty class, truncated image; skipBadImages", async () => {
  const dir = await tempDir();
  try {
    const missing = join(dir, "nowhere");
    await assert.rejects(
      () => loadImageFolder(missing, { split: "train", inputSize: 8, log: null }),
      (e) =>
        e instanceof UserError && e.message.includes(missing) && /does not exist/.test(e.message),
    );
    const root = join(dir, "ds");
    await writePng(join(root, "apple/a.png"), 8, 8, [1, 1, 1]);
    await writePng(join(root, "apple/b.png"), 8, 8, [2, 2, 2]);
    await Deno.mkdir(join(root, "pear"));
    await Deno.writeTextFile(join(root, "pear/readme.md"), "#");
    await assert.rejects(
      () => loadImageFolder(root, { split: "train", inputSize: 8, valSplit: 0, log: null }),
      (e) =>
        e instanceof UserError && e.message.includes(join(root, "pear")) &&
        /has no images/.test(e.message),
    );
    await Deno.remove(join(root, "pear"), { recursive: true });
    const full = jpegBytes(32, 32, [50, 60, 70]);
    const bad = join(root, "apple/c.jpg");
    await Deno.writeFile(bad, full.subarray(0, full.length >> 1));
    await assert.rejects(
      () => loadImageFolder(root, { split: "train", inputSize: 8, valSplit: 0, log: null }),
      (e) =>
        e instanceof UserError && e.message.includes(bad) && /truncated/.test(e.message) &&
        e.message.includes("(--skip-bad-images skips such files)") && !e.message.includes("\n"),
    );
    const lines: string[] = [];
    const ds = await loadImageFolder(root, {
      split: "train",
      inputSize: 8,
      valSplit: 0,
      skipBadImages: true,
      log: (l) => lines.push(l),
    });
    assert.equal(ds.size, 2);
    assert.deepEqual([colorOf(ds, 0), colorOf(ds, 1)], [[1, 1, 1], [2, 2, 2]]);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /skipped 1 unreadable image/);
    assert.ok(lines[0].includes(bad));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
