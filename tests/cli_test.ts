/**
 * The two command-line entrypoints, run as `deno run` subprocesses with the permissions their
 * `deno.json` tasks give (writing only under `.test-tmp`, no network): one-line errors for bad
 * flags and data, `eval --compare` over two run folders, and `eval --run` with a grid.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { tf } from "../deps.ts";
import { decodePng } from "../deno_deps.ts";
import { ort } from "../dev_deps.ts";
import { initBackend } from "../backend/backend.ts";
import { parseSafetensors } from "../io/safetensors.ts";
import { createModel } from "../models/registry.ts";
import { loadWeights, stateEntries, torchShape } from "../models/weights.ts";
import { detInput, detStateValue, nchwToNhwc } from "../bench/det.ts";
import { readPthFixture, readSkeleton, rebuildPth } from "./support/pth.ts";
import { resolveConfig } from "../training/config.ts";
import { train } from "../training/loop.ts";
import { readRun, RUN_FILES } from "../run/records.ts";
import { cifarBytes, tempDir } from "./data_testutil.ts";

const TRAIN_TS = fromFileUrl(new URL("../train.ts", import.meta.url));
const EVAL_TS = fromFileUrl(new URL("../eval.ts", import.meta.url));
const EXPORT_TS = fromFileUrl(new URL("../export.ts", import.meta.url));
const DENO_JSON = fromFileUrl(new URL("../deno.json", import.meta.url));

/**
 * The `--allow-*` flags of a `deno.json` task, with writes narrowed to `.test-tmp` and the
 * network dropped.
 */
async function taskPermissions(task: "train" | "eval" | "export"): Promise<string[]> {
  const tasks = JSON.parse(await Deno.readTextFile(DENO_JSON)).tasks as Record<string, string>;
  const flags = tasks[task].split(/\s+/).filter((a) => a.startsWith("--allow-"));
  assert.ok(flags.some((f) => f.startsWith("--allow-write=")), `${task} task names its writes`);
  return flags
    .filter((f) => !f.startsWith("--allow-net"))
    .map((f) => f.startsWith("--allow-write") ? "--allow-write=.test-tmp" : f);
}

/** Runs an entrypoint with its task's (narrowed) permissions. */
async function runCli(
  script: string,
  task: "train" | "eval" | "export",
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const perms = await taskPermissions(task);
  // `deno` from PATH: the test task's `--allow-run=deno` names it so (Deno.execPath() may be the
  // real binary behind a PATH shim, which that permission does not cover).
  const out = await new Deno.Command("deno", {
    args: ["run", "--no-prompt", ...perms, script, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Asserts a failed run: exit code 1 and exactly one `error: ...` line on stderr; returns it. */
function oneErrorLine(r: { code: number; stdout: string; stderr: string }): string {
  assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  return lines[0];
}

Deno.test("train CLI: bad flags and a missing data folder are one-line errors", async () => {
  const root = await tempDir();
  try {
    const missing = join(root, "no-such-data");
    const out = join(root, "run");
    // A run folder that exists already, and one where the task may not write.
    const taken = join(root, "taken");
    await Deno.mkdir(taken);
    await Deno.writeTextFile(join(taken, "metrics.jsonl"), "old\n");
    const outside = "regnet-not-writable-" + crypto.randomUUID();
    const [unknown, model, epochs, data, existing, forbidden] = await Promise.all([
      runCli(TRAIN_TS, "train", ["--model", "resnet20", "--bogus-flag", "3"]),
      runCli(TRAIN_TS, "train", ["--model", "nosuch"]),
      runCli(TRAIN_TS, "train", ["--model", "resnet20", "--epochs", "-3", "--out", out]),
      runCli(TRAIN_TS, "train", ["--model", "resnet20", "--data", missing, "--out", out]),
      runCli(TRAIN_TS, "train", ["--model", "resnet20", "--data", missing, "--out", taken]),
      runCli(TRAIN_TS, "train", ["--model", "resnet20", "--data", missing, "--out", outside]),
    ]);

    // Both checked before the data (which is missing here) is read.
    const x = oneErrorLine(existing);
    assert.ok(x.includes(`--resume ${taken}`) && x.includes("fresh --out"), x);
    assert.equal(await Deno.readTextFile(join(taken, "metrics.jsonl")), "old\n");
    const f = oneErrorLine(forbidden);
    assert.ok(
      f.includes(`--out ${outside}`) &&
        f.includes(`deno run --allow-read --allow-write=${outside},runs,data `) &&
        f.includes(" train.ts ") && !f.includes("run again with"),
      f,
    );
    await assert.rejects(() => Deno.stat(outside), Deno.errors.NotFound);

    const u = oneErrorLine(unknown);
    assert.match(u, /--bogus-flag/);
    for (const flag of ["--model", "--epochs", "--data", "--lr", "--resume"]) {
      assert.ok(u.includes(flag), `lists ${flag}: ${u}`);
    }

    const m = oneErrorLine(model);
    assert.match(m, /nosuch/);
    for (const name of ["resnet20", "resnet20-convgru", "regnet400mf"]) {
      assert.ok(m.includes(name), `lists ${name}: ${m}`);
    }

    const e = oneErrorLine(epochs);
    assert.match(e, /--epochs/);
    assert.match(e, /-3/);

    const d = oneErrorLine(data);
    assert.ok(d.includes(missing), `names the folder: ${d}`);
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "no run folder is made");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("eval CLI: --compare tables two runs; --run writes eval.json and the grid", async () => {
  await initBackend({ backend: "webgpu", log: null });
  const root = await tempDir();
  try {
    const labels = (n: number, k: number) => Array.from({ length: n }, (_, i) => (i * k) % 10);
    await Deno.writeFile(join(root, "data_batch_1.bin"), cifarBytes(labels(8, 1)));
    await Deno.writeFile(join(root, "test_batch.bin"), cifarBytes(labels(16, 3), undefined, 40));
    const runs = [join(root, "run1"), join(root, "run2")];
    for (const [i, out] of runs.entries()) {
      const config = resolveConfig("resnet20", {
        data: root,
        epochs: 1,
        batchSize: 8,
        seed: i,
        backend: "webgpu",
      });
      await train(config, { out, log: () => {} });
    }

    const [compare, evaluated, unknown] = await Promise.all([
      runCli(EVAL_TS, "eval", ["--compare", ...runs]),
      runCli(EVAL_TS, "eval", [
        "--run",
        runs[0],
        "--grid",
        join(root, "grid.png"),
        "--limit",
        "16",
      ]),
      runCli(EVAL_TS, "eval", ["--run", runs[0], "--nope"]),
    ]);

    assert.equal(compare.code, 0, compare.stderr);
    const table = compare.stdout.trimEnd().split("\n");
    assert.equal(table.length, 4, compare.stdout);
    assert.match(table[0], /^\| run +\| model +\| parameters/);
    assert.match(table[1], /^\|:?-+/);
    for (const [i, dir] of runs.entries()) {
      const row = table[2 + i];
      assert.ok(row.startsWith(`| ${dir} `), row);
      assert.match(row, /\| resnet20 +\| +272,474 \| +1\/1 \|/);
    }

    assert.equal(evaluated.code, 0, evaluated.stderr);
    assert.match(evaluated.stdout, /resnet20 on 16 cifar10 test images/);
    const report = JSON.parse(await Deno.readTextFile(join(runs[0], "eval.json")));
    assert.equal(report.model, "resnet20");
    assert.equal(report.weights, join(runs[0], RUN_FILES.best));
    assert.equal(report.images, 16);
    assert.equal(report.confusion.length, 10);
    assert.equal(report.confusion.flat().reduce((a: number, b: number) => a + b, 0), 16);
    // The run validated on the same 16 images with the same (best) weights.
    const [record] = (await readRun(runs[0])).records;
    assert.equal(report.accuracy, record.val_acc);
    assert.ok(Math.abs(report.loss - record.val_loss) < 1e-4, `${report.loss} ${record.val_loss}`);
    const png = await Deno.readFile(join(root, "grid.png"));
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const image = decodePng(png);
    assert.ok(image.width > 100 && image.height > 100, `${image.width}x${image.height}`);

    const u = oneErrorLine(unknown);
    assert.match(u, /--nope/);
    assert.ok(u.includes("--compare") && u.includes("--grid"), u);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("export CLI: a run to ONNX, a DataParallel .pth to safetensors; bad .pth files are one line", async () => {
  await initBackend({ log: null });
  const root = await tempDir();
  try {
    const labels = (n: number) => Array.from({ length: n }, (_, i) => (i * 3) % 10);
    await Deno.writeFile(join(root, "data_batch_1.bin"), cifarBytes(labels(8)));
    await Deno.writeFile(join(root, "test_batch.bin"), cifarBytes(labels(8), undefined, 40));
    const run = join(root, "run");
    const config = resolveConfig("resnet20", { data: root, epochs: 1, batchSize: 8, seed: 5 });
    await train(config, { out: run, log: () => {} });
    const probe = createModel("resnet20");
    const shapes = new Map(stateEntries(probe).map((e) => [e.name, torchShape(e)]));
    probe.dispose();
    const dp = join(root, "dp.pth"), evil = join(root, "evil.pth"), text = join(root, "text.pth");
    await Deno.writeFile(dp, await rebuildPth(await readSkeleton("resnet20-dataparallel"), shapes));
    await Deno.writeFile(evil, await readPthFixture("forbidden-global.pth"));
    await Deno.writeFile(text, new TextEncoder().encode("not a checkpoint"));

    const onnxPath = join(root, "out", "model.onnx"), safePath = join(root, "dp.safetensors");
    const [toOnnx, toSafe, evalEvil, exportText] = await Promise.all([
      runCli(EXPORT_TS, "export", ["--run", run, "--out", onnxPath]),
      runCli(EXPORT_TS, "export", [
        "--model",
        "resnet20",
        "--weights",
        dp,
        "--format",
        "safetensors",
        "--out",
        safePath,
      ]),
      runCli(EVAL_TS, "eval", ["--model", "resnet20", "--weights", evil, "--data", root]),
      runCli(EXPORT_TS, "export", ["--model", "resnet20", "--weights", text]),
    ]);

    assert.equal(toOnnx.code, 0, toOnnx.stderr);
    assert.match(toOnnx.stdout, /ONNX opset 17: "input" \[N, 3, 32, 32\] float32 NCHW/);
    // ONNX Runtime gives the logits of the run's best weights.
    const model = createModel("resnet20", { numClasses: 10 });
    await loadWeights(model, join(run, RUN_FILES.best));
    const shape = [2, 3, 32, 32];
    const nchw = detInput("input.b", shape);
    const x = tf.tensor4d(nchwToNhwc(nchw, shape), [2, 32, 32, 3]);
    const y = model.predict(x) as tf.Tensor;
    const ours = await y.data() as Float32Array;
    tf.dispose([x, y]);
    model.dispose();
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create(await Deno.readFile(onnxPath));
    const theirs = (await session.run({ input: new ort.Tensor("float32", nchw, shape) })).logits;
    await session.release();
    const got = theirs.data as Float32Array;
    ours.forEach((v, i) => assert.ok(Math.abs(got[i] - v) <= 1e-4 * Math.max(1, Math.abs(v))));

    assert.equal(toSafe.code, 0, toSafe.stderr);
    assert.match(toSafe.stdout, /removed the prefix "module\." from every tensor name/);
    const saved = parseSafetensors(await Deno.readFile(safePath)).tensors;
    assert.deepEqual(saved.get("conv1.weight")!.data, detStateValue("conv1.weight", [16, 3, 3, 3]));

    assert.match(
      oneErrorLine(evalEvil),
      /evil\.pth: refused: the pickle names the global posix\.system/,
    );
    assert.match(
      oneErrorLine(exportText),
      /text\.pth: not a PyTorch checkpoint \(not a zip archive/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
