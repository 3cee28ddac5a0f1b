import assert from "node:assert/strict";
import { join } from "node:path";
import {
  appendEpochRecord,
  epochLineHeader,
  type EpochRecord,
  formatEpochLine,
  readRun,
  type RunConfig,
  writeRunConfig,
} from "../run/records.ts";
import { UserError } from "../util/errors.ts";

async function tempDir(): Promise<string> {
  await Deno.mkdir(".test-tmp", { recursive: true });
  return await Deno.makeTempDir({ dir: ".test-tmp" });
}

const config: RunConfig = {
  model: "resnet20",
  params: 272474,
  dataset: "cifar10",
  epochs: 150,
  batch_size: 64,
  lr: 0.1,
  milestones: [80],
};

function record(epoch: number, valAcc: number): EpochRecord {
  return {
    epoch,
    lr: 0.1,
    train_loss: 2 / epoch,
    train_acc: 0.3 + epoch / 100,
    val_loss: 2.2 / epoch,
    val_acc: valAcc,
    epoch_time_s: 40 + epoch,
    img_per_s: 1250 - epoch,
  };
}

Deno.test("readRun reads back what writeRunConfig and appendEpochRecord wrote", async () => {
  const root = await tempDir();
  try {
    const dir = join(root, "run-a");
    const records = [record(1, 0.4), record(2, 0.55), record(3, 0.5)];
    await writeRunConfig(dir, config);
    for (const r of records) await appendEpochRecord(dir, r);
    const run = await readRun(dir);
    assert.deepEqual(run.config, config);
    assert.deepEqual(run.records, records);

    // A diverged loss (NaN) is written as null and read back as NaN.
    await appendEpochRecord(dir, { ...record(4, 0.1), train_loss: NaN });
    const again = await readRun(dir);
    assert.equal(again.records.length, 4);
    assert.ok(Number.isNaN(again.records[3].train_loss));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("readRun names the missing or malformed file", async () => {
  const root = await tempDir();
  try {
    const dir = join(root, "run-b");
    await Deno.mkdir(dir);
    await assert.rejects(() => readRun(dir), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /run-b\/config\.json not found/);
      return true;
    });
    await writeRunConfig(dir, config);
    await assert.rejects(() => readRun(dir), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /run-b\/metrics\.jsonl not found/);
      return true;
    });
    await Deno.writeTextFile(
      join(dir, "metrics.jsonl"),
      JSON.stringify(record(1, 0.4)) + "\n{oops\n",
    );
    await assert.rejects(() => readRun(dir), /metrics\.jsonl: line 2 is not valid JSON/);
    const { val_acc: _, ...partial } = record(1, 0.4);
    await Deno.writeTextFile(join(dir, "metrics.jsonl"), JSON.stringify(partial) + "\n");
    await assert.rejects(() => readRun(dir), /line 1 lacks the number "val_acc"/);
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ model: "m" }));
    await assert.rejects(() => readRun(dir), /config\.json: "dataset" must be a string/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("formatEpochLine keeps fixed columns whatever the values", () => {
  const header = epochLineHeader();
  const lines = [
    formatEpochLine(record(3, 0.55), 150),
    formatEpochLine(record(150, 1), 150),
    formatEpochLine(
      { ...record(12, 0), lr: 1e-12, train_loss: 123456.789, img_per_s: 98765432.1 },
      150,
    ),
    formatEpochLine({ ...record(7, 0.5), val_loss: NaN, epoch_time_s: 0.04 }, 150),
  ];
  for (const line of lines) assert.equal(line.length, header.length, line);
  // Every column ends where its header ends.
  const ends = [...header.matchAll(/\S+/g)].map((m) => m.index! + m[0].length);
  for (const line of lines) {
    for (const end of ends) assert.notEqual(line[end - 1], " ", `${line} @ ${end}`);
  }
  assert.match(lines[0], /^\s+3\/150\s+1\.00e-1\s+0\.6667\s+33\.00%\s+0\.7333\s+55\.00%\s+43\.0s/);
  assert.match(lines[1], /150\/150 .* 100\.00%/);
  assert.match(lines[3], /NaN/);
});
