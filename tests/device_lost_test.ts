/**
 * A WebGPU device lost in the middle of a run (destroyed through the step hook, as a GPU reset or
 * a driver crash would lose it): the run stops with one line, the checkpoint of the last epoch is
 * intact, and `deno task train --resume` in a fresh process (a new device) finishes the run. Its
 * own file: the destroyed device leaves this process's webgpu backend unusable.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { parseSafetensors } from "../io/safetensors.ts";
import { RUN_FILES } from "../run/records.ts";
import { resolveConfig } from "../training/config.ts";
import { train } from "../training/loop.ts";
import { UserError } from "../util/errors.ts";
import { cifarBytes, tempDir } from "./data_testutil.ts";
import { hasAdapter } from "./support/gpu.ts";
import { runTask } from "./support/tasks.ts";

async function epochOf(dir: string): Promise<number> {
  const bytes = await Deno.readFile(join(dir, RUN_FILES.checkpoint));
  return JSON.parse(parseSafetensors(bytes).metadata.progress).epoch;
}

Deno.test({
  name:
    "device lost mid-run: one line, the last epoch's checkpoint intact, --resume finishes on a new device",
  ignore: !hasAdapter,
}, async () => {
  await initBackend({ backend: "webgpu", log: null });
  const root = await tempDir();
  try {
    const labels = (n: number, k: number) => Array.from({ length: n }, (_, i) => (i * k) % 10);
    await Deno.writeFile(join(root, "data_batch_1.bin"), cifarBytes(labels(8, 1)));
    await Deno.writeFile(join(root, "test_batch.bin"), cifarBytes(labels(4, 3), undefined, 500));
    const config = resolveConfig("resnet20", {
      data: root,
      epochs: 2,
      batchSize: 4,
      inputSize: 8,
      seed: 3,
      backend: "webgpu",
    });
    const dir = join(root, "run");
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    const lines: string[] = [];
    await assert.rejects(
      () =>
        train(config, {
          out: dir,
          log: (l) => void lines.push(l),
          onStep: (epoch, step) => void (epoch === 2 && step === 1 && device.destroy()),
        }),
      (e: Error) => {
        assert.ok(e instanceof UserError, `${e}\n${e.stack}`);
        assert.ok(!e.message.includes("\n"), e.message);
        assert.match(e.message, /^WebGPU device lost/);
        assert.ok(
          e.message.includes(
            `the checkpoint of epoch 1 (${join(dir, RUN_FILES.checkpoint)}) is ` +
              `intact; continue on a new device with deno task train --resume ${dir}`,
          ),
          e.message,
        );
        return true;
      },
    );
    assert.equal(await epochOf(dir), 1, "the checkpoint is epoch 1's");

    const resumed = await runTask("train", ["--resume", dir]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.ok(resumed.stdout.includes(`resuming ${dir} after epoch 1 of 2`), resumed.stdout);
    assert.ok(resumed.stdout.includes("done: best val acc"), resumed.stdout);
    assert.equal(await epochOf(dir), 2);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
