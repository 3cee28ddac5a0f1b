/**
 * The training loop end to end on tiny generated CIFAR data: the files of a run folder, exact
 * resume after a simulated kill, a clean stop on a non-finite loss, and the learning-rate
 * schedule of the presets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decodePng } from "../deno_deps.ts";
import { parseSafetensors, type SafeTensor } from "../io/safetensors.ts";
import { createModel } from "../models/registry.ts";
import { loadWeights, stateDict } from "../models/weights.ts";
import { appendEpochRecord, readRun } from "../run/records.ts";
import { loadCheckpoint } from "../run/checkpoint.ts";
import { learningRate, PRESETS, resolveConfig, type TrainConfig } from "../training/config.ts";
import { train, type TrainOptions } from "../training/loop.ts";
import { initBackend } from "../backend/backend.ts";
import { RUN_FILES, type SavedRun } from "../run/records.ts";
import { SGD } from "../training/optimizer.ts";
import { UserError } from "../util/errors.ts";
import { cifarBytes, tempDir } from "./data_testutil.ts";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const RECORD_NUMBERS = [
  "lr",
  "train_loss",
  "train_acc",
  "val_loss",
  "val_acc",
  "epoch_time_s",
  "img_per_s",
] as const;

/** A CIFAR-10 folder with `train` training and `test` test images (labels cycle over 10). */
async function writeCifar(dir: string, train: number, test: number): Promise<void> {
  const labels = (n: number, k: number) => Array.from({ length: n }, (_, i) => (i * k) % 10);
  await Deno.writeFile(join(dir, "data_batch_1.bin"), cifarBytes(labels(train, 1)));
  await Deno.writeFile(join(dir, "test_batch.bin"), cifarBytes(labels(test, 3), undefined, 500));
}

/** resnet20 at 32x32, batch 8, seed 3, on the given data folder. */
function tinyConfig(data: string, overrides: Partial<TrainConfig> = {}): TrainConfig {
  return resolveConfig("resnet20", {
    data,
    epochs: 2,
    batchSize: 8,
    seed: 3,
    backend: "webgpu",
    ...overrides,
  });
}

/** The `model.` (and `optimizer.`) tensors of a checkpoint file, and its metadata. */
async function readSafetensors(path: string) {
  return parseSafetensors(await Deno.readFile(path), path);
}

/** Names of files under `dir` containing `.tmp-` (left-over atomic writes). */
async function tmpFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.includes(".tmp-")) out.push(e.name);
  return out;
}

/** Asserts both maps hold the same names, shapes and values (within `tol`). */
function assertSameTensors(
  a: Map<string, SafeTensor>,
  b: Map<string, SafeTensor>,
  tol: number,
  what: string,
): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), `${what}: same tensor names`);
  for (const [name, ta] of a) {
    const tb = b.get(name)!;
    assert.deepEqual(ta.shape, tb.shape, `${what}: shape of ${name}`);
    for (let i = 0; i < ta.data.length; i++) {
      const x = Number(ta.data[i]), y = Number(tb.data[i]);
      if (!(Math.abs(x - y) <= tol)) {
        assert.fail(`${what}: ${name}[${i}] differs: ${x} vs ${y}`);
      }
    }
  }
}

const silent = (lines: string[]) => (line: string) => void lines.push(line);

/**
 * Options that stop a run as Ctrl-C would, once step `step` of epoch `epoch` (1-based) is
 * queued: in the middle of the epoch, or after it when it is the epoch's last step.
 */
function stopAt(epoch: number, step: number): Pick<TrainOptions, "signal" | "onStep"> {
  const stop = new AbortController();
  return {
    signal: stop.signal,
    onStep: (e, s) => void (e === epoch && s === step && stop.abort()),
  };
}

Deno.test("train: a 2-epoch run writes every file; a resumed run equals an uninterrupted one", async (t) => {
  await initBackend({ backend: "webgpu", log: null });
  const root = await tempDir();
  try {
    await writeCifar(root, 16, 8);
    const config = tinyConfig(root);
    const dirA = join(root, "a");
    const logA: string[] = [];
    const resultA = await train(config, { out: dirA, log: silent(logA) });

    await t.step("every file of the run folder is written", async () => {
      assert.deepEqual(resultA, {
        dir: dirA,
        epochs: 2,
        bestAccuracy: resultA.bestAccuracy,
        interrupted: false,
      });
      assert.ok(logA.some((l) => l.startsWith("done: best val acc")), logA.join("\n"));

      const saved = JSON.parse(await Deno.readTextFile(join(dirA, RUN_FILES.config))) as SavedRun;
      assert.equal(saved.model, "resnet20");
      assert.equal(saved.params, 272474);
      assert.equal(saved.epochs, 2);
      assert.equal(saved.train.batchSize, 8);
      assert.ok(!("batch_size" in saved), "the batch size is saved once, in train");
      assert.equal(saved.train_images, 16);
      assert.equal(saved.val_images, 8);
      assert.equal(saved.classes.length, 10);
      assert.deepEqual(saved.train, JSON.parse(JSON.stringify(config)));

      const { records } = await readRun(dirA);
      assert.deepEqual(records.map((r) => r.epoch), [1, 2]);
      for (const r of records) {
        for (const key of RECORD_NUMBERS) {
          assert.ok(Number.isFinite(r[key]), `epoch ${r.epoch}: ${key} = ${r[key]}`);
        }
        assert.equal(r.lr, 0.1);
      }
      assert.equal(
        resultA.bestAccuracy,
        Math.max(...records.map((r) => r.val_acc)),
        "best accuracy is the best recorded val_acc",
      );

      const checkpoint = await readSafetensors(join(dirA, RUN_FILES.checkpoint));
      assert.equal(checkpoint.metadata.format, "regnet-checkpoint-v1");
      assert.equal(JSON.parse(checkpoint.metadata.progress).epoch, 2);
      const names = [...checkpoint.tensors.keys()];
      assert.ok(names.some((n) => n.startsWith("optimizer.")), "momentum buffers are saved");

      const model = createModel("resnet20", { numClasses: 10, inputSize: 32, seed: 99 });
      try {
        const fresh = await stateDict(model);
        const bestPath = join(dirA, RUN_FILES.best);
        await loadWeights(model, bestPath);
        const loaded = await stateDict(model);
        assertSameTensors(loaded, (await readSafetensors(bestPath)).tensors, 0, "best weights");
        assert.equal(names.filter((n) => n.startsWith("model.")).length, loaded.size);
        const w = "conv1.weight";
        assert.notDeepEqual(fresh.get(w)!.data, loaded.get(w)!.data, "weights were replaced");
      } finally {
        model.dispose();
      }

      const png = await Deno.readFile(join(dirA, RUN_FILES.curves));
      assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
      const image = decodePng(png);
      assert.ok(image.width > 100 && image.height > 100, `${image.width}x${image.height}`);
      assert.deepEqual(await tmpFiles(dirA), []);
    });

    await t.step(
      "resume after a kill at epoch 1 gives the uninterrupted run's weights",
      async () => {
        const dirB = join(root, "b");
        // 2 steps per epoch: a stop at epoch 1's last step ends the run after epoch 1.
        const first = await train(config, { out: dirB, log: silent([]), ...stopAt(1, 2) });
        assert.equal(first.epochs, 1);
        assert.equal(first.interrupted, true);
        assert.equal((await readRun(dirB)).records.length, 1);

        const logB: string[] = [];
        const second = await train(config, { log: silent(logB) }, dirB);
        assert.equal(second.dir, dirB);
        assert.equal(second.epochs, 2);
        assert.equal(second.interrupted, false);
        assert.ok(logB.some((l) => l.includes("resuming") && l.includes("after epoch 1")));

        const a = (await readSafetensors(join(dirA, RUN_FILES.checkpoint))).tensors;
        const b = (await readSafetensors(join(dirB, RUN_FILES.checkpoint))).tensors;
        assertSameTensors(a, b, 1e-6, "checkpoint after epoch 2 (model and momentum)");

        const recA = (await readRun(dirA)).records;
        const recB = (await readRun(dirB)).records;
        assert.equal(recB.length, 2);
        for (let i = 0; i < 2; i++) {
          assert.equal(recB[i].epoch, recA[i].epoch);
          assert.equal(recB[i].lr, recA[i].lr);
          for (const key of ["train_loss", "train_acc", "val_loss", "val_acc"] as const) {
            assert.ok(
              Math.abs(recB[i][key] - recA[i][key]) <= 1e-6,
              `epoch ${i + 1} ${key}: ${recB[i][key]} vs ${recA[i][key]}`,
            );
          }
        }
        assert.deepEqual(await tmpFiles(dirB), []);
      },
    );
    await t.step(
      "resume after a stop in the middle of an epoch (Ctrl-C) gives the uninterrupted run's weights",
      async () => {
        const dirC = join(root, "c");
        // 2 steps per epoch: stop after 3 steps, in the middle of epoch 2.
        const first = await train(config, { out: dirC, log: silent([]), ...stopAt(2, 1) });
        assert.equal(first.epochs, 1);
        assert.equal(first.interrupted, true);
        const logC: string[] = [];
        const second = await train(config, { log: silent(logC) }, dirC);
        assert.equal(second.epochs, 2);
        assert.ok(logC.some((l) => l.includes("step 1 of epoch 2")), logC.join("\n"));
        const a = (await readSafetensors(join(dirA, RUN_FILES.checkpoint))).tensors;
        const c = (await readSafetensors(join(dirC, RUN_FILES.checkpoint))).tensors;
        assertSameTensors(a, c, 1e-6, "checkpoint after epoch 2 (model and momentum)");
        const recA = (await readRun(dirA)).records, recC = (await readRun(dirC)).records;
        assert.equal(recC.length, 2);
        assert.ok(Math.abs(recC[1].train_loss - recA[1].train_loss) <= 1e-6);
        assert.equal(recC[1].train_acc, recA[1].train_acc);
        assert.deepEqual(await tmpFiles(dirC), []);
      },
    );
    /** Asserts that the run in `dir` ended as run A: same checkpoint and same records. */
    const assertSameAsA = async (dir: string) => {
      const a = (await readSafetensors(join(dirA, RUN_FILES.checkpoint))).tensors;
      const b = (await readSafetensors(join(dir, RUN_FILES.checkpoint))).tensors;
      assertSameTensors(a, b, 1e-6, `${dir}: checkpoint after epoch 2 (model and momentum)`);
      const recA = (await readRun(dirA)).records, rec = (await readRun(dir)).records;
      assert.deepEqual(rec.map((r) => r.epoch), [1, 2]);
      for (let i = 0; i < 2; i++) {
        assert.equal(rec[i].lr, recA[i].lr);
        for (const key of ["train_loss", "train_acc", "val_loss", "val_acc"] as const) {
          assert.ok(
            Math.abs(rec[i][key] - recA[i][key]) <= 1e-6,
            `${dir}: epoch ${i + 1} ${key}: ${rec[i][key]} vs ${recA[i][key]}`,
          );
        }
      }
      assert.deepEqual(await tmpFiles(dir), []);
    };
    await t.step(
      "resume after Ctrl-C in the middle of epoch 1 gives the uninterrupted run",
      async () => {
        const dir = join(root, "e1");
        const first = await train(config, { out: dir, log: silent([]), ...stopAt(1, 1) });
        assert.deepEqual([first.epochs, first.interrupted], [0, true]);
        const log: string[] = [];
        const second = await train(config, { log: silent(log) }, dir);
        assert.deepEqual([second.epochs, second.interrupted], [2, false]);
        assert.ok(log.some((l) => l.includes("step 1 of epoch 1")), log.join("\n"));
        await assertSameAsA(dir);
      },
    );
    await t.step(
      "resume after Ctrl-C before the first step (or a kill in epoch 1) starts over the same way",
      async () => {
        const dir = join(root, "e0");
        const stop = new AbortController();
        stop.abort();
        const first = await train(config, { out: dir, log: silent([]), signal: stop.signal });
        assert.deepEqual([first.epochs, first.interrupted], [0, true]);
        assert.deepEqual((await readRun(dir)).records, []);
        await train(config, { log: silent([]) }, dir);
        await assertSameAsA(dir);
      },
    );
    await t.step(
      "a kill between an epoch's record and its checkpoint: the epoch is run and recorded once",
      async () => {
        const dir = join(root, "dup");
        await train(config, { out: dir, log: silent([]), ...stopAt(1, 2) });
        const { records } = await readRun(dir);
        // As if killed after appending epoch 2's record, before writing its checkpoint.
        await appendEpochRecord(dir, { ...records[0], epoch: 2, train_loss: 9 });
        await train(config, { log: silent([]) }, dir);
        await assertSameAsA(dir);
      },
    );
    await t.step(
      "--out naming an existing run folder is refused and nothing in it changes",
      async () => {
        const before = new Map<string, Uint8Array>();
        for await (const e of Deno.readDir(dirA)) {
          before.set(e.name, await Deno.readFile(join(dirA, e.name)));
        }
        await assert.rejects(
          () => train(config, { out: dirA, log: silent([]) }),
          (e) => {
            assert.ok(e instanceof UserError, String(e));
            assert.ok(e.message.includes(`--resume ${dirA},`), e.message);
            assert.match(e.message, /fresh --out/);
            assert.ok(!e.message.includes("\n"), "one line");
            return true;
          },
        );
        const after = new Map<string, Uint8Array>();
        for await (const e of Deno.readDir(dirA)) {
          after.set(e.name, await Deno.readFile(join(dirA, e.name)));
        }
        assert.deepEqual(after, before);
        // An empty folder is fine.
        const empty = join(root, "empty");
        await Deno.mkdir(empty);
        const r = await train({ ...config, epochs: 1 }, { out: empty, log: silent([]) });
        assert.equal(r.epochs, 1);
      },
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("train: a non-finite loss stops with a UserError and keeps the last good checkpoint", async () => {
  await initBackend({ backend: "webgpu", log: null });
  const root = await tempDir();
  try {
    await writeCifar(root, 16, 8);
    // Epoch 1 at lr 0.05 is fine; from epoch 2 the rate is infinite, so epoch 2's first update
    // makes the weights infinite (or NaN) and its second step's loss NaN, on any adapter. (A
    // finite rate of 5e28 made the weights huge but finite, and BatchNorm kept the loss finite
    // for a step or more, for as long as the overflows happened to allow: on Mesa's OpenGL
    // driver the loss went NaN an epoch later than on its Vulkan driver.)
    const config = tinyConfig(root, { epochs: 3, lr: 0.05, lrSteps: [1], lrGamma: Infinity });
    const dir = join(root, "nan");
    await assert.rejects(
      () => train(config, { out: dir, log: silent([]) }),
      (e) => {
        assert.ok(e instanceof UserError, String(e));
        assert.match(e.message, /loss became (NaN|-?Infinity) at epoch 2, step 2/);
        assert.match(e.message, /checkpoint/);
        assert.ok(!e.message.includes("\n"), "one line");
        return true;
      },
    );
    assert.deepEqual((await readRun(dir)).records.map((r) => r.epoch), [1]);

    const model = createModel("resnet20", { numClasses: 10, inputSize: 32 });
    const opt = new SGD({ lr: 0.1, momentum: 0.9 });
    try {
      const progress = await loadCheckpoint(join(dir, RUN_FILES.checkpoint), model, opt);
      assert.equal(progress.epoch, 1);
      for (const [name, tensor] of await stateDict(model)) {
        assert.ok(tensor.data.every((v) => Number.isFinite(Number(v))), `${name} is finite`);
      }
      await loadWeights(model, join(dir, RUN_FILES.best));
    } finally {
      opt.dispose();
      model.dispose();
    }
    assert.deepEqual(await tmpFiles(dir), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("learning-rate schedule and presets follow the reference code's recipes", () => {
  const resnet = resolveConfig("resnet20", {});
  assert.ok(Math.abs(learningRate(resnet, 0) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(resnet, 79) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(resnet, 80) - 0.01) < 1e-12);
  assert.ok(Math.abs(learningRate(resnet, 149) - 0.01) < 1e-12);
  assert.equal(resnet.epochs, 150);
  assert.equal(resnet.batchSize, 64);
  assert.equal(resnet.weightDecay, 1e-4);

  const regnet = resolveConfig("regnet400mf", {});
  assert.deepEqual(
    [regnet.epochs, regnet.inputSize, regnet.lrSteps, regnet.weightDecay],
    [10, 224, [8], 0],
  );
  assert.ok(Math.abs(learningRate(regnet, 7) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(regnet, 8) - 0.01) < 1e-12);
  assert.deepEqual(PRESETS.regnet.lrSteps, [8]);

  const custom = resolveConfig("resnet20", { lr: 0.5, lrSteps: [2, 4], epochs: undefined });
  assert.equal(custom.epochs, 150, "an undefined override keeps the preset");
  assert.deepEqual([0, 2, 4].map((e) => +learningRate(custom, e).toPrecision(6)), [
    0.5,
    0.05,
    0.005,
  ]);
});
