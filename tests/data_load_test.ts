import assert from "node:assert/strict";
import { join } from "node:path";
import { DATASET_NAMES, loadDataset } from "../data/load.ts";
import { UserError } from "../util/errors.ts";
import { cifarBytes, tempDir } from "./data_testutil.ts";

Deno.test("loadDataset: names, and a clear error for an unknown one or a folder without --data", async () => {
  assert.deepEqual([...DATASET_NAMES], ["cifar10", "cifar100", "folder"]);
  await assert.rejects(
    () => loadDataset({ dataset: "mnist" as "cifar10", split: "train", inputSize: 32 }),
    (e) => e instanceof UserError && /valid: cifar10, cifar100, folder/.test(e.message),
  );
  await assert.rejects(
    () => loadDataset({ dataset: "folder", split: "train", inputSize: 32 }),
    (e) => e instanceof UserError && /--data/.test(e.message),
  );
});

Deno.test("loadDataset: CIFAR with dir uses the local copy and never touches the network", async () => {
  const dir = await tempDir();
  const realFetch = globalThis.fetch;
  let fetches = 0;
  globalThis.fetch = () => {
    fetches++;
    return Promise.reject(new Error("no network in this test"));
  };
  try {
    await Deno.writeFile(join(dir, "test_batch.bin"), cifarBytes([4, 2]));
    const ds = await loadDataset({
      dataset: "cifar10",
      dir,
      split: "test",
      inputSize: 224,
      log: null,
    });
    assert.deepEqual(Array.from(ds.labels), [4, 2]);
    assert.equal(ds.height, 32, "CIFAR stays 32x32; batches resize on the backend");
    const missing = join(dir, "absent");
    await assert.rejects(
      () =>
        loadDataset({ dataset: "cifar10", dir: missing, split: "train", inputSize: 32, log: null }),
      (e) => e instanceof UserError && e.message.includes(missing),
    );
    assert.equal(fetches, 0);
  } finally {
    globalThis.fetch = realFetch;
    await Deno.remove(dir, { recursive: true });
  }
});
