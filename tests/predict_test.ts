/**
 * `predict.ts` run as a `deno run` subprocess with its task's permissions (writes narrowed to
 * `.test-tmp`) on small run folders made here (a resnet20 with seeded weights and the
 * `config.json` the trainer writes) and images written with the project's encoders. The top
 * class of each image is checked against the model's own logits on pixels prepared here, as
 * training prepares them, without the predict code.
 *
 * @module
 */
import assert from "node:assert/strict";
import { runTask, type TaskOutput, taskPermissions } from "./support/tasks.ts";
import { join } from "node:path";
import { tf } from "../deps.ts";
import { decodePng, encodePng, jpeg } from "../deno_deps.ts";
import { initBackend } from "../backend/backend.ts";
import { normalizePixels } from "../data/batches.ts";
import { decodeImage, resizeBilinear } from "../data/image.ts";
import { countParams, createModel } from "../models/registry.ts";
import { loadWeights, saveWeights, stateEntries } from "../models/weights.ts";
import { gridLayout } from "../report/grid.ts";
import { RUN_FILES, writeEpochRecords, writeRunConfig } from "../run/records.ts";
import { resolveConfig } from "../training/config.ts";
import { tempDir } from "./data_testutil.ts";

const CLASSES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/** Runs predict.ts with the `predict` task's permissions, writes narrowed to `.test-tmp`. */
async function predict(args: string[]): Promise<TaskOutput> {
  const { flags } = await taskPermissions("predict");
  assert.ok(!flags.some((p) => p.startsWith("--allow-net")), "predict needs no network");
  return await runTask("predict", args);
}

/** Asserts a failed run with exactly one `error: ...` line on stderr; returns it. */
function oneErrorLine(r: { code: number; stderr: string }): string {
  assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0], /^error: /);
  return lines[0];
}

/**
 * A run folder as train.ts leaves it: config.json, an empty metrics.jsonl and best.safetensors
 * (resnet20, seed 7, its head (linear) scaled so that the classes are far apart).
 */
async function makeRun(
  dir: string,
  overrides: { dataset: "cifar10" | "folder"; inputSize: number },
) {
  const model = createModel("resnet20", {
    numClasses: 10,
    inputSize: overrides.inputSize,
    seed: 7,
  });
  const entries = stateEntries(model);
  const fc = entries.find((e) => e.name === "linear.weight")!.variable;
  const scaled = tf.tidy(() => fc.read().mul(40));
  fc.write(scaled);
  scaled.dispose();
  const train = resolveConfig("resnet20", { ...overrides, data: "photos", epochs: 1 });
  await writeRunConfig(dir, {
    model: "resnet20",
    params: countParams(model),
    dataset: train.dataset,
    epochs: 1,
    train,
    classes: CLASSES,
  });
  await writeEpochRecords(dir, []);
  await Deno.writeFile(join(dir, RUN_FILES.best), await saveWeights(model));
  model.dispose();
}

/** An image of distinct content per seed: gradients and stripes. */
function pattern(w: number, h: number, seed: number): Uint8Array {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      data[i] = (x * 255 / w + seed * 40) & 255;
      data[i + 1] = ((x + y * seed) % 9 < 4 ? 230 : 20) - seed * 5;
      data[i + 2] = (y * 255 / h) * (seed % 3) / 2;
    }
  }
  return data;
}

function rgba(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array((rgb.length / 3) * 4);
  for (let p = 0; p < rgb.length / 3; p++) {
    out.set(rgb.subarray(3 * p, 3 * p + 3), 4 * p);
    out[4 * p + 3] = 255;
  }
  return out;
}

/**
 * The photos: good ones of several sizes (PNG and JPEG, one in a sub-folder), a truncated PNG
 * and a text file the folder walk skips; and a text file named on its own.
 */
async function makePhotos(root: string) {
  const dir = join(root, "photos");
  await Deno.mkdir(join(dir, "sub"), { recursive: true });
  const png = (w: number, h: number, s: number) =>
    encodePng({ width: w, height: h, data: pattern(w, h, s), channels: 3 });
  await Deno.writeFile(join(dir, "a.png"), png(32, 32, 1));
  await Deno.writeFile(join(dir, "b.png"), png(50, 37, 2)); // another size: resized
  const jpg = jpeg.encode({ data: rgba(pattern(40, 40, 3)), width: 40, height: 40 }, 95).data;
  await Deno.writeFile(join(dir, "c.JPG"), jpg);
  await Deno.writeFile(join(dir, "sub", "d.png"), png(20, 33, 4));
  await Deno.writeFile(join(dir, "e.png"), png(32, 32, 5).subarray(0, 60)); // truncated
  await Deno.writeTextFile(join(dir, "readme.txt"), "not a photo");
  const notes = join(root, "notes.png");
  await Deno.writeTextFile(notes, "a text file with an image name");
  const good = ["a.png", "b.png", "c.JPG", "e.png", "sub/d.png"].map((f) => join(dir, f));
  return { dir, notes, good: good.filter((f) => !f.endsWith("e.png")), broken: good[3] };
}

/** The model's own answer for one image: its argmax, the top-2 logit gap, softmax in float64. */
interface Reference {
  top: number;
  gap: number;
  probabilities: number[];
}

/**
 * The model's own top class for each file, the pixels prepared here as training prepares them:
 * decoded, resized (PIL bilinear) to `stored`, normalized, resized on the backend to the input
 * size when it differs (CIFAR runs), then the logits' argmax. Also the gap between the two
 * largest logits, to tell a tie.
 */
async function modelTop1(run: string, files: string[], stored: number, inputSize: number) {
  const model = createModel("resnet20", { numClasses: 10, inputSize });
  await loadWeights(model, join(run, RUN_FILES.best));
  const out: Reference[] = [];
  for (const file of files) {
    const img = resizeBilinear(decodeImage(await Deno.readFile(file)), {
      width: stored,
      height: stored,
    });
    const logits = tf.tidy(() => {
      let x: tf.Tensor4D = tf.tensor4d(normalizePixels(img.data), [1, stored, stored, 3]);
      if (stored !== inputSize) {
        x = tf.image.resizeBilinear(x, [inputSize, inputSize], false, true);
      }
      return model.predict(x) as tf.Tensor2D;
    });
    const v = Array.from(await logits.data());
    logits.dispose();
    const sorted = [...v].sort((a, b) => b - a);
    const exp = v.map((l) => Math.exp(l - sorted[0]));
    const total = exp.reduce((a, b) => a + b, 0);
    out.push({
      top: v.indexOf(sorted[0]),
      gap: sorted[0] - sorted[1],
      probabilities: exp.map((e) => e / total),
    });
  }
  model.dispose();
  return out;
}

interface Json {
  predictions: { path: string; top: { class: string; probability: number }[] }[];
  failed: { path: string; why: string }[];
}

/** The table rows of stdout: file, then `<class> <percent>` per rank. */
function tableRows(stdout: string): { path: string; top: [string, string][] }[] {
  const lines = stdout.split("\n");
  const start = lines.findIndex((l) => l.startsWith("file "));
  assert.ok(start >= 0, stdout);
  const end = lines.indexOf("", start);
  return lines.slice(start + 1, end).map((line) => {
    const [path, ...cells] = line.split(/ {2,}/);
    return { path, top: cells.map((c) => c.split(" ") as [string, string]) };
  });
}

/** Checks the top-k of every good file, in order, against the JSON and the model's logits. */
function checkPredictions(
  json: Json,
  stdout: string,
  good: string[],
  k: number,
  top1: Reference[],
) {
  assert.deepEqual(json.predictions.map((p) => p.path), good);
  const rows = tableRows(stdout);
  assert.deepEqual(rows.map((r) => r.path), good, "the table lists every good file, in order");
  json.predictions.forEach((p, i) => {
    assert.equal(p.top.length, k);
    const probs = p.top.map((t) => t.probability);
    for (let j = 1; j < k; j++) assert.ok(probs[j] <= probs[j - 1], `${p.path}: sorted ${probs}`);
    const sum = probs.reduce((a, b) => a + b, 0);
    assert.ok(sum > 0 && sum <= 1 + 1e-6, `${p.path}: probabilities sum to ${sum}`);
    assert.equal(new Set(p.top.map((t) => t.class)).size, k, "distinct classes");
    assert.deepEqual(
      rows[i].top,
      p.top.map((t) => [t.class, `${(100 * t.probability).toFixed(1)}%`]),
      `${p.path}: the table shows the JSON's classes and probabilities`,
    );
    if (top1[i].gap > 1e-4) {
      assert.equal(p.top[0].class, CLASSES[top1[i].top], `${p.path}: the model's argmax`);
    }
    // Each probability is the softmax of the model's logits on the same pixels.
    for (const t of p.top) {
      const want = top1[i].probabilities[CLASSES.indexOf(t.class)];
      assert.ok(
        Math.abs(t.probability - want) < 1e-5,
        `${p.path} ${t.class}: ${t.probability} ${want}`,
      );
    }
  });
  assert.ok(top1.filter((t) => t.gap > 1e-4).length >= good.length - 1, "no ties to speak of");
}

Deno.test("predict CLI: table, --json, --csv, --grid; a bad file is one line and the rest is classified", async () => {
  await initBackend({ backend: "cpu", log: null });
  const root = await tempDir();
  try {
    const run = join(root, "run");
    await makeRun(run, { dataset: "cifar10", inputSize: 32 });
    const { dir, notes, good, broken } = await makePhotos(root);
    const [jsonPath, csvPath, gridPath] = ["p.json", "out/p.csv", "grid.png"].map((f) =>
      join(root, f)
    );
    const missing = join(root, "no-such.png");
    const r = await predict([
      "--run",
      run,
      "--backend",
      "cpu",
      dir,
      notes,
      missing,
      "--json",
      jsonPath,
      "--csv",
      csvPath,
      "--grid",
      gridPath,
    ]);
    assert.equal(r.code, 1, r.stderr);
    // One line for each bad path, naming it; then the closing error line.
    const errs = r.stderr.trimEnd().split("\n");
    assert.equal(errs.length, 4, r.stderr);
    for (const bad of [broken, notes, missing]) {
      assert.equal(errs.filter((l) => l.includes(bad)).length, 1, `${bad}:\n${r.stderr}`);
    }
    assert.match(errs.find((l) => l.includes(notes))!, /unreadable image: not a JPEG or PNG/);
    assert.match(errs.find((l) => l.includes(missing))!, /no such file or folder/);
    assert.match(errs[3], /^error: 3 path\(s\)/);
    assert.doesNotMatch(r.stdout + r.stderr, /readme\.txt/, "the folder walk skips non-images");

    const json = JSON.parse(await Deno.readTextFile(jsonPath)) as Json;
    assert.deepEqual(json.failed.map((f) => f.path).sort(), [broken, notes, missing].sort());
    const top1 = await modelTop1(run, good, 32, 32);
    checkPredictions(json, r.stdout, good, 3, top1);

    // The CSV holds the JSON's rows.
    const csv = (await Deno.readTextFile(csvPath)).trimEnd().split("\n").map((l) => l.split(","));
    assert.deepEqual(csv[0], [
      "path",
      "class_1",
      "probability_1",
      "class_2",
      "probability_2",
      "class_3",
      "probability_3",
    ]);
    assert.deepEqual(
      csv.slice(1),
      json.predictions.map((p) => [p.path, ...p.top.flatMap((t) => [t.class, `${t.probability}`])]),
    );

    const grid = decodePng(await Deno.readFile(gridPath));
    const layout = gridLayout(good.length);
    assert.equal(grid.width, layout.width);
    assert.equal(grid.height, layout.height);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("predict CLI: --top 5; a CIFAR run at input 40 and a folder run at 24 resize as training did", async () => {
  await initBackend({ backend: "cpu", log: null });
  const root = await tempDir();
  try {
    const cifar = join(root, "cifar40"), folder = join(root, "folder24");
    await makeRun(cifar, { dataset: "cifar10", inputSize: 40 });
    await makeRun(folder, { dataset: "folder", inputSize: 24 });
    const { good } = await makePhotos(root);
    const jsons = [join(root, "cifar.json"), join(root, "folder.json")];
    const [a, b] = await Promise.all([
      predict(["--run", cifar, "--backend", "cpu", "--top", "5", "--json", jsons[0], ...good]),
      predict(["--run", folder, "--backend", "cpu", "--json", jsons[1], ...good]),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(a.stdout, /resized to 32x32, then 40x40/);
    assert.match(b.stdout, /resized to 24x24\)/);
    const [ja, jb] = await Promise.all(
      jsons.map(async (f) => JSON.parse(await Deno.readTextFile(f))),
    );
    checkPredictions(ja, a.stdout, good, 5, await modelTop1(cifar, good, 32, 40));
    checkPredictions(jb, b.stdout, good, 3, await modelTop1(folder, good, 24, 24));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("predict CLI: --help, and one-line errors for a missing run, no images, a forbidden write", async () => {
  const root = await tempDir();
  try {
    const run = join(root, "run");
    await initBackend({ backend: "cpu", log: null });
    await makeRun(run, { dataset: "cifar10", inputSize: 32 });
    const empty = join(root, "empty");
    await Deno.mkdir(empty);
    await Deno.writeTextFile(join(empty, "x.txt"), "no images");
    const photo = join(root, "a.png");
    await Deno.writeFile(
      photo,
      encodePng({ width: 8, height: 8, data: pattern(8, 8, 1), channels: 3 }),
    );
    const outside = "predict-not-writable-" + crypto.randomUUID() + ".json";
    const noRun = join(root, "no-such-run");
    const [help, missingRun, none, forbidden, classes] = await Promise.all([
      predict(["--help"]),
      predict(["--run", noRun, photo]),
      predict(["--run", run, "--backend", "cpu", empty]),
      predict(["--run", run, "--json", outside, photo]),
      predict(["--run", run, "--backend", "cpu", "--classes", "a,b", photo]),
    ]);
    assert.equal(help.code, 0, help.stderr);
    for (
      const words of [
        "recursively",
        "folder dataset: straight to the input size",
        "CIFAR: to 32x32",
      ]
    ) {
      assert.ok(help.stdout.includes(words), `--help mentions "${words}":\n${help.stdout}`);
    }
    for (const flag of ["--top", "--batch-size", "--backend", "--json", "--csv", "--grid"]) {
      assert.ok(help.stdout.includes(flag), flag);
    }
    assert.ok(oneErrorLine(missingRun).includes(noRun));
    assert.ok(oneErrorLine(none).includes(empty));
    const f = oneErrorLine(forbidden);
    assert.ok(
      f.includes(`--json ${outside}`) &&
        f.includes(`deno run --allow-read --allow-write=${outside},runs `) &&
        f.includes(" predict.ts "),
      f,
    );
    await assert.rejects(() => Deno.stat(outside), Deno.errors.NotFound);
    assert.match(oneErrorLine(classes), /--classes name 2 classes, .* has 10/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
