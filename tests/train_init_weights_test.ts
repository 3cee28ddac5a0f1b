/**
 * `--init-weights` (fine-tuning): a 10-class ResNet20 saved by `torch.save` starts a 100-class
 * run; every tensor but the head is loaded, the head is listed, and a file that fits nothing
 * stops the run before its folder is made.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../backend/backend.ts";
import { parseSafetensors } from "../io/safetensors.ts";
import { createModel } from "../models/registry.ts";
import { stateEntries, torchShape } from "../models/weights.ts";
import { resolveConfig } from "../training/config.ts";
import { train } from "../training/loop.ts";
import { RUN_FILES } from "../run/records.ts";
import { UserError } from "../util/errors.ts";
import { cifarBytes, tempDir } from "./data_testutil.ts";
import { detStateValue } from "../bench/det.ts";
import { readPthFixture, readSkeleton, rebuildPth } from "./support/pth.ts";

await initBackend({ log: null });

/** A CIFAR-100 folder: 16 training and 8 test images. */
async function writeCifar100(dir: string): Promise<void> {
  const fine = (n: number) => Array.from({ length: n }, (_, i) => (i * 37) % 100);
  const coarse = (n: number) => Array.from({ length: n }, (_, i) => i % 20);
  await Deno.writeFile(join(dir, "train.bin"), cifarBytes(fine(16), coarse(16)));
  await Deno.writeFile(join(dir, "test.bin"), cifarBytes(fine(8), coarse(8), 500));
}

Deno.test("--init-weights loads what fits from a .pth and lists the head", async () => {
  const dir = await tempDir();
  try {
    await writeCifar100(dir);
    const shapes = (() => {
      const m = createModel("resnet20", { numClasses: 10 });
      const s = new Map(stateEntries(m).map((e) => [e.name, torchShape(e)]));
      m.dispose();
      return s;
    })();
    const pth = join(dir, "resnet20-cifar10.pth");
    await Deno.writeFile(pth, await rebuildPth(await readSkeleton("resnet20"), shapes));
    const lines: string[] = [];
    const out = join(dir, "run");
    // lr 0: the weights after one epoch are the loaded ones, so the file shows what was loaded.
    const config = resolveConfig("resnet20", {
      dataset: "cifar100",
      data: dir,
      epochs: 1,
      batchSize: 8,
      lr: 0,
      initWeights: pth,
    });
    await train(config, { out, log: (l) => lines.push(l), eager: true });
    const total = shapes.size;
    assert.ok(
      lines.includes(`--init-weights ${pth}: loaded ${total - 2} of the model's ${total} tensors`),
      lines.join("\n"),
    );
    assert.ok(
      lines.includes(
        "  not loaded (kept from initialization): linear.weight [10,64] (expected [100,64]), " +
          "linear.bias [10] (expected [100])",
      ),
      lines.join("\n"),
    );
    const best = parseSafetensors(await Deno.readFile(join(out, RUN_FILES.best))).tensors;
    for (const name of ["conv1.weight", "layer3.2.conv2.weight", "layer2.0.shortcut.0.weight"]) {
      assert.deepEqual(best.get(name)!.data, detStateValue(name, shapes.get(name)!), name);
    }
    assert.deepEqual(best.get("linear.weight")!.shape, [100, 64]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--init-weights with nothing that fits stops before the run folder", async () => {
  const dir = await tempDir();
  try {
    await writeCifar100(dir);
    const pth = join(dir, "views.pth");
    await Deno.writeFile(pth, await readPthFixture("views.pth"));
    const out = join(dir, "run");
    const config = resolveConfig("resnet20", {
      dataset: "cifar100",
      data: dir,
      epochs: 1,
      batchSize: 8,
      initWeights: pth,
    });
    await assert.rejects(
      () => train(config, { out, log: () => {} }),
      (e: Error) =>
        e instanceof UserError && e.message.startsWith(`${pth}: no tensor fits model "resnet20"`),
    );
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
