/**
 * The run folder on its own (no training, cpu backend): a new run refuses another run's folder,
 * the best weights follow the best validation accuracy, the curves and records are written, a
 * resumed run finds its last epoch, and `resolveModelSource` reads a run.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { parseSafetensors } from "../io/safetensors.ts";
import { createModel } from "../models/registry.ts";
import { stateDict, stateEntries } from "../models/weights.ts";
import { resolveModelSource, RunFolder } from "../run/folder.ts";
import { appendEpochRecord, type EpochRecord, readRun, type SavedRun } from "../run/records.ts";
import { resolveConfig } from "../training/config.ts";
import { SGD } from "../training/optimizer.ts";
import { UserError } from "../util/errors.ts";
import { tempDir } from "./data_testutil.ts";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function record(epoch: number, valAcc: number): EpochRecord {
  return {
    epoch,
    lr: 0.1,
    train_loss: 2 / epoch,
    train_acc: 0.3 + epoch / 100,
    val_loss: 2.2 / epoch,
    val_acc: valAcc,
    epoch_time_s: 10,
    img_per_s: 100,
  };
}

function saved(): SavedRun {
  const train = resolveConfig("resnet20", { epochs: 3, backend: "cpu" });
  return { model: "resnet20", params: 1, dataset: "cifar10", epochs: 3, train, classes: [] };
}

/** Sets every element of `conv1.weight` to `value`, as an epoch of training would change it. */
function setConv1(model: tf.LayersModel, value: number): void {
  const v = stateEntries(model).find((e) => e.name === "conv1.weight")!.variable;
  const filled = tf.fill(v.shape as number[], value);
  v.write(filled);
  filled.dispose();
}

async function conv1Of(path: string): Promise<number> {
  return Number(parseSafetensors(await Deno.readFile(path)).tensors.get("conv1.weight")!.data[0]);
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("RunFolder.create refuses a folder holding files and writes nothing before start", async () => {
  const root = await tempDir();
  try {
    const taken = join(root, "taken");
    await Deno.mkdir(taken);
    await Deno.writeTextFile(join(taken, "metrics.jsonl"), "old\n");
    await assert.rejects(() => RunFolder.create(taken), (e) => {
      assert.ok(e instanceof UserError, String(e));
      assert.ok(e.message.includes(`--resume ${taken},`) && e.message.includes("fresh --out"));
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
    assert.equal(await Deno.readTextFile(join(taken, "metrics.jsonl")), "old\n");
    const file = join(root, "file");
    await Deno.writeTextFile(file, "x");
    await assert.rejects(() => RunFolder.create(file), /--out .*file is a file/);

    const fresh = join(root, "fresh"), empty = join(root, "empty");
    await Deno.mkdir(empty);
    await RunFolder.create(fresh);
    await RunFolder.create(empty);
    await assert.rejects(() => Deno.stat(fresh), Deno.errors.NotFound, "nothing made yet");
    assert.deepEqual(await names(empty), []);
    assert.match(
      RunFolder.defaultDir("resnet20", new Date("2025-03-04T05:06:07.890Z")),
      /^runs[\\/]resnet20-20250304-050607$/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("RunFolder: best weights follow the best val acc; records, checkpoint and curves are written; resume finds the last epoch", async () => {
  await initBackend({ backend: "cpu", log: null });
  const root = await tempDir();
  const model = createModel("resnet20", { numClasses: 10, seed: 1 });
  const opt = new SGD({ lr: 0.1, momentum: 0.9 });
  const other = createModel("resnet20", { numClasses: 10, seed: 2 });
  const otherOpt = new SGD({ lr: 0.1, momentum: 0.9 });
  try {
    const dir = join(root, "run");
    const run = await RunFolder.create(dir);
    await run.start(saved(), model, opt);
    assert.deepEqual(await names(dir), ["checkpoint.safetensors", "config.json", "metrics.jsonl"]);
    assert.deepEqual((await readRun(dir)).records, []);

    // Epoch e leaves conv1.weight filled with e; val acc peaks at epoch 2.
    const accs = [0.3, 0.5, 0.4];
    const bestAfter: number[] = [];
    for (const [i, acc] of accs.entries()) {
      setConv1(model, i + 1);
      await run.recordEpoch(record(i + 1, acc), model, opt);
      bestAfter.push(await conv1Of(run.path("best")));
      assert.deepEqual(run.progress, {
        epoch: i + 1,
        bestAccuracy: Math.max(...accs.slice(0, i + 1)),
        bestEpoch: accs.indexOf(Math.max(...accs.slice(0, i + 1))) + 1,
      });
    }
    assert.deepEqual(bestAfter, [1, 2, 2], "best.safetensors holds epoch 2's weights from then on");
    const checkpoint = parseSafetensors(await Deno.readFile(run.path("checkpoint")));
    assert.equal(Number(checkpoint.tensors.get("model.conv1.weight")!.data[0]), 3);
    assert.equal(JSON.parse(checkpoint.metadata.progress).epoch, 3);
    assert.deepEqual(
      (await readRun(dir)).records,
      accs.map((a, i) => record(i + 1, a)),
    );
    const png = await Deno.readFile(run.path("curves"));
    assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
    assert.ok(png.length > 1000, `${png.length} bytes`);

    // As if killed after epoch 4's record, before its checkpoint: resume drops that record.
    await appendEpochRecord(dir, record(4, 0.9));
    const resumed = await RunFolder.resume(dir);
    assert.equal(resumed.config.train.batchSize, 64);
    const progress = await resumed.restore(other, otherOpt);
    assert.deepEqual(progress, { epoch: 3, bestAccuracy: 0.5, bestEpoch: 2 });
    assert.deepEqual(resumed.records.map((r) => r.epoch), [1, 2, 3]);
    assert.deepEqual((await readRun(dir)).records.map((r) => r.epoch), [1, 2, 3]);
    assert.deepEqual(await stateDict(other), await stateDict(model), "the checkpoint's weights");
    assert.ok(!(await names(dir)).some((n) => n.includes(".tmp-")), "no temporary file left");

    // eval, export and predict read the run through resolveModelSource.
    const source = await resolveModelSource({ run: dir });
    assert.deepEqual([source.model, source.weights], ["resnet20", run.path("best")]);
    assert.equal(source.saved?.train.inputSize, 32);
    const given = await resolveModelSource({ run: dir, weights: "w.safetensors" });
    assert.equal(given.weights, "w.safetensors", "flags first");
    await assert.rejects(() => resolveModelSource({ model: "resnet20" }), UserError);
  } finally {
    opt.dispose();
    otherOpt.dispose();
    model.dispose();
    other.dispose();
    await Deno.remove(root, { recursive: true });
  }
});
