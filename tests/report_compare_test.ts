import assert from "node:assert/strict";
import { join } from "node:path";
import { formatDuration, groupThousands } from "../report/compare.ts";
import { compareRuns } from "../run/folder.ts";
import { appendEpochRecord, type EpochRecord, writeRunConfig } from "../run/records.ts";
import { UserError } from "../util/errors.ts";

function record(epoch: number, valAcc: number, seconds: number, imgPerS: number): EpochRecord {
  return {
    epoch,
    lr: 0.1,
    train_loss: 1,
    train_acc: 0.5,
    val_loss: 1,
    val_acc: valAcc,
    epoch_time_s: seconds,
    img_per_s: imgPerS,
  };
}

async function makeRun(dir: string, model: string, params: number, records: EpochRecord[]) {
  await writeRunConfig(dir, { model, params, dataset: "cifar10", epochs: 150, batch_size: 64 });
  for (const r of records) await appendEpochRecord(dir, r);
}

Deno.test("compareRuns has one row per run, in order, with its figures", async () => {
  await Deno.mkdir(".test-tmp", { recursive: true });
  const root = await Deno.makeTempDir({ dir: ".test-tmp" });
  try {
    const a = join(root, "resnet");
    const b = join(root, "regnet");
    await makeRun(a, "resnet20", 272474, [
      record(1, 0.40, 30, 1000),
      record(2, 0.6125, 31, 1100),
      record(3, 0.58, 29, 1200),
    ]);
    await makeRun(b, "regnety_400mf", 4344144, [
      record(1, 0.35, 3000, 200),
      record(2, 0.7, 3700, 300),
    ]);
    const table = await compareRuns([b, a]);
    const lines = table.trimEnd().split("\n");
    assert.equal(lines.length, 4);
    const cells = (line: string) => line.split("|").slice(1, -1).map((c) => c.trim());
    assert.deepEqual(cells(lines[0]), [
      "run",
      "model",
      "parameters",
      "epochs",
      "best val acc",
      "final val acc",
      "training time",
      "img/s",
    ]);
    assert.match(lines[1], /^\|[-:|]+\|$/);
    assert.deepEqual(cells(lines[2]), [
      b,
      "regnety_400mf",
      "4,344,144",
      "2/150",
      "70.00% (epoch 2)",
      "70.00%",
      "1h 51m 40s",
      "250.0",
    ]);
    assert.deepEqual(cells(lines[3]), [
      a,
      "resnet20",
      "272,474",
      "3/150",
      "61.25% (epoch 2)",
      "58.00%",
      "1m 30s",
      "1100.0",
    ]);
    // All rows are equally wide.
    assert.equal(new Set(lines.map((l) => l.length)).size, 1);

    await assert.rejects(() => compareRuns([a, join(root, "nope")]), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.ok(e.message.includes(join(root, "nope")));
      return true;
    });
    await assert.rejects(() => compareRuns([]), UserError);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("durations and parameter counts are written for people", () => {
  assert.equal(formatDuration(12.34), "12.3s");
  assert.equal(formatDuration(245), "4m 05s");
  assert.equal(formatDuration(7384), "2h 03m 04s");
  assert.equal(groupThousands(272474), "272,474");
  assert.equal(groupThousands(999), "999");
});
