/**
 * `deno task eval --model <name> --weights <file> [flags]` (or `--run <run folder>`): test
 * accuracy and loss, per-class accuracy and confusion matrix, the reference code's 4x4 prediction grid
 * (`--grid grid.png`), and `--compare <run> <run> ...`, a Markdown table of training runs.
 *
 * @module
 */
import { join } from "node:path";
import { tf } from "./deps.ts";
import { BACKEND_NAMES, initBackend } from "./backend/backend.ts";
import { DATASET_NAMES, type DatasetName, loadDataset } from "./data/load.ts";
import { takeFirst } from "./data/dataset.ts";
import { createModel, MODEL_CHOICES, modelSpec } from "./models/registry.ts";
import { assignStateDict, readStateDict } from "./models/weights.ts";
import { renderPredictionGrid } from "./report/grid.ts";
import { RUN_FILES } from "./run/records.ts";
import { compareRuns, resolveModelSource } from "./run/folder.ts";
import {
  confusionMatrix,
  formatConfusion,
  formatPerClass,
  perClassAccuracy,
} from "./report/tables.ts";
import { type FlagSpec, helpText, parseFlags, runCli } from "./cli/args.ts";
import { evaluate } from "./training/evaluate.ts";

import { writeFileAtomic } from "./util/files.ts";
import { Rng } from "./util/rng.ts";
import { requireWrite, UserError } from "./util/errors.ts";
import { storedImageSize } from "./training/classify.ts";

const FLAGS: Record<string, FlagSpec> = {
  "run": { kind: "string", help: "a run folder: its model, data and best weights" },
  "model": { kind: "choice", choices: MODEL_CHOICES, help: "model (with --weights)" },
  "weights": { kind: "string", help: "weights with PyTorch names: safetensors or a .pth" },
  "dataset": { kind: "choice", choices: DATASET_NAMES, help: "dataset (default cifar10)" },
  "data": { kind: "string", help: "data folder; without it CIFAR is downloaded into data/" },
  "input-size": { kind: "int", help: "image size fed to the model (default: the model's)" },
  "batch-size": { kind: "int", help: "images per batch (default 64)" },
  "limit": { kind: "int", help: "evaluate the first N test images" },
  "backend": { kind: "choice", choices: BACKEND_NAMES, help: "tfjs backend (default webgpu)" },
  "eager": { kind: "bool", help: "every batch through tfjs (no captured-batch replay on webgpu)" },
  "grid": { kind: "string", help: "write the 4x4 prediction grid PNG here" },
  "seed": { kind: "uint", help: "seed choosing the grid's 16 images (default 0)" },
  "json": { kind: "string", help: "write the results as JSON here (default <run>/eval.json)" },
  "compare": { kind: "bool", help: "print a Markdown table of the run folders given as arguments" },
  "help": { kind: "bool", help: "show this help" },
};

runCli(async () => {
  const { values: v, positionals } = parseFlags(Deno.args, FLAGS);
  if (v["help"]) {
    console.log(
      helpText(
        "usage: deno task eval (--run <dir> | --model <name> --weights <file>) [flags]\n" +
          "       deno task eval --compare <run> <run> ...",
        FLAGS,
      ),
    );
    return;
  }
  if (v["compare"]) {
    if (!positionals.length) throw new UserError("--compare: give one or more run folders");
    console.log(await compareRuns(positionals));
    return;
  }
  if (positionals.length) {
    throw new UserError(`unexpected argument "${positionals[0]}"; see --help`);
  }

  const run = v["run"] as string | undefined;
  // --run, --model, --weights
  const { saved, model: modelName, weights } = await resolveModelSource(
    v as Parameters<typeof resolveModelSource>[0],
  );
  // Where results go is checked before the data loads and the model runs.
  const jsonPath = (v["json"] as string | undefined) ??
    (run ? join(run, RUN_FILES.eval) : undefined);
  const gridPath = v["grid"] as string | undefined;
  if (jsonPath) await requireWrite(jsonPath, v["json"] ? "--json" : "--run", "eval.ts");
  if (gridPath) await requireWrite(gridPath, "--grid", "eval.ts");
  const dataset = (v["dataset"] as DatasetName | undefined) ?? saved?.train.dataset ?? "cifar10";
  const data = (v["data"] as string | undefined) ?? saved?.train.data;
  const inputSize = (v["input-size"] as number | undefined) ?? saved?.train.inputSize ??
    modelSpec(modelName).defaultInputSize;
  const batchSize = (v["batch-size"] as number | undefined) ?? 64;

  let test = await loadDataset({
    dataset,
    dir: data,
    split: "test",
    inputSize: storedImageSize(dataset, inputSize),
    download: data === undefined,
    valSplit: saved?.train.valSplit,
    seed: saved?.train.seed,
  });
  if (v["limit"]) test = takeFirst(test, Math.min(v["limit"] as number, test.size));
  // The weights are read before the GPU starts: a bad file fails at once.
  const { tensors, notes } = await readStateDict(weights);
  await initBackend({ backend: v["backend"] as "webgpu" | "cpu" | undefined });
  const classes = [...test.classNames];
  const model = createModel(modelName, { numClasses: classes.length, inputSize });
  assignStateDict(model, tensors, weights);
  for (const note of notes) console.log(`${weights}: ${note}`);

  const result = await evaluate(model, test, { batchSize, inputSize, eager: v["eager"] === true });
  const matrix = confusionMatrix(result.predictions, test.labels, classes.length);
  console.log(
    `${modelName} on ${test.size} ${dataset} test images (${test.source}): ` +
      `accuracy ${(100 * result.accuracy).toFixed(2)}%, loss ${result.loss.toFixed(4)}, ` +
      `${(test.size / result.seconds).toFixed(1)} img/s`,
  );
  console.log(`\nper-class accuracy\n${formatPerClass(matrix, classes)}`);
  console.log(
    `\nconfusion matrix (rows: truth, columns: prediction)\n${formatConfusion(matrix, classes)}`,
  );

  if (jsonPath) {
    const report = {
      model: modelName,
      weights,
      dataset,
      images: test.size,
      accuracy: result.accuracy,
      loss: result.loss,
      classes,
      per_class_accuracy: perClassAccuracy(matrix),
      confusion: matrix,
    };
    await writeFileAtomic(
      jsonPath,
      new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"),
    );
    console.log(`\nresults written to ${jsonPath}`);
  }

  if (gridPath) {
    const rng = new Rng((v["seed"] as number | undefined) ?? 0);
    const order = rng.shuffle(Int32Array.from({ length: test.size }, (_, i) => i));
    const picked = [...order.subarray(0, Math.min(16, test.size))];
    const pixels = test.height * test.width * 3;
    const items = picked.map((i) => ({
      pixels: test.pixels.subarray(i * pixels, (i + 1) * pixels),
      height: test.height,
      width: test.width,
      predicted: classes[result.predictions[i]],
      truth: classes[test.labels[i]],
    }));
    await writeFileAtomic(gridPath, await renderPredictionGrid(items));
    const right = picked.filter((i) => result.predictions[i] === test.labels[i]).length;
    console.log(`grid of ${items.length} test images (${right} right) written to ${gridPath}`);
  }
  model.dispose();
  tf.disposeVariables();
});
