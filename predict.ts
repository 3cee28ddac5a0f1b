/**
 * `deno task predict (--run <dir> | --model <name> --weights <file>) FILE|DIR...`: classifies
 * photos with a trained model and prints each file's most probable classes; `--json`, `--csv`
 * and `--grid` write them too.
 *
 * @module
 */
import { dirname } from "node:path";
import { tf } from "./deps.ts";
import { BACKEND_NAMES, initBackend } from "./backend/backend.ts";
import { DATASET_NAMES } from "./data/load.ts";
import { createModel, MODEL_CHOICES, modelSpec } from "./models/registry.ts";
import { assignStateDict, readStateDict } from "./models/weights.ts";
import { renderPredictionGrid } from "./report/grid.ts";
import { formatPredictionTable, type PredictionRow, predictionsCsv } from "./report/predictions.ts";
import { collectImages, readImages } from "./run/predict.ts";
import { headRows } from "./run/records.ts";
import { resolveModelSource } from "./run/folder.ts";
import { type FlagSpec, helpText, parseFlags, runCli } from "./cli/args.ts";
import { classifyImages, storedImageSize } from "./training/classify.ts";
import { writeFileAtomic } from "./util/files.ts";
import { requireWrite, UserError } from "./util/errors.ts";

const FLAGS: Record<string, FlagSpec> = {
  "run": { kind: "string", help: "a run folder: its model, classes, input size and best weights" },
  "model": { kind: "choice", choices: MODEL_CHOICES, help: "model (with --weights)" },
  "weights": { kind: "string", help: "weights with PyTorch names: safetensors or a .pth" },
  "classes": { kind: "string", help: "class names a,b,c (default: the run's, else class 0, ...)" },
  "dataset": {
    kind: "choice",
    choices: DATASET_NAMES,
    help: "how the model's data was resized (default: the run's, else cifar10)",
  },
  "input-size": { kind: "int", help: "image size fed to the model (default: the run's)" },
  "top": { kind: "int", help: "classes shown per image (default 3)" },
  "batch-size": { kind: "int", help: "images per batch (default 64)" },
  "backend": { kind: "choice", choices: BACKEND_NAMES, help: "tfjs backend (default webgpu)" },
  "json": { kind: "string", help: "write the predictions as JSON here" },
  "csv": { kind: "string", help: "write the predictions as CSV here" },
  "grid": { kind: "string", help: "write a 4x4 grid PNG of the first 16 images here" },
  "help": { kind: "bool", help: "show this help" },
};

const USAGE = `usage: deno task predict (--run <dir> | --model <name> --weights <file>) FILE|DIR...

FILE is classified whatever its name; DIR gives its .jpg, .jpeg and .png files, recursively,
sorted by path. Each image is resized as the run's training data was (without a run: as
--dataset's, default cifar10):
  folder dataset: straight to the input size (PIL-style antialiased bilinear, as the folder
    loader resizes its images);
  CIFAR: to 32x32 in the same way, then, when the input size is not 32 (regnet at 224), the
    batch is resized on the backend to the input size as training's batches are.
Then normalized as in training, (pixel / 255 - 0.5) / 0.5. An unreadable file is one line on
stderr, the others are still classified, and the exit code is then 1.`;

runCli(async () => {
  const { values: v, positionals } = parseFlags(Deno.args, FLAGS);
  if (v["help"]) {
    console.log(helpText(USAGE, FLAGS));
    return;
  }
  // --run, --model, --weights
  const { saved, model: modelName, weights } = await resolveModelSource(
    v as Parameters<typeof resolveModelSource>[0],
  );
  if (!positionals.length) throw new UserError("give one or more image files or folders");
  const outputs = { "--json": v["json"], "--csv": v["csv"], "--grid": v["grid"] };
  for (const [flag, path] of Object.entries(outputs)) {
    if (typeof path === "string") await requireWrite(path, flag, "predict.ts");
  }
  const dataset = (v["dataset"] as string | undefined) ?? saved?.train.dataset ?? "cifar10";
  const inputSize = (v["input-size"] as number | undefined) ?? saved?.train.inputSize ??
    modelSpec(modelName).defaultInputSize;
  const size = storedImageSize(dataset, inputSize);
  const given = v["classes"] as string | undefined;
  const named = given?.split(",").map((c) => c.trim()) ?? saved?.classes;
  if (named?.some((c) => c === "")) throw new UserError(`--classes: an empty name in "${given}"`);

  // The images are read before the GPU starts: no image at all fails at once.
  const { files, missing } = await collectImages(positionals);
  if (!files.length && !missing.length) {
    throw new UserError(`no .jpg, .jpeg or .png images in ${positionals.join(", ")}`);
  }
  const { pixels, paths, unreadable } = await readImages(files, size);
  const failed = [...missing, ...unreadable];
  for (const { path, why } of failed) console.error(`${path}: ${why}`);
  if (!paths.length) {
    throw new UserError(`none of the ${failed.length} path(s) is a readable image`);
  }

  const { tensors, notes } = await readStateDict(weights);
  for (const note of notes) console.log(`${weights}: ${note}`);
  await initBackend({ backend: v["backend"] as "webgpu" | "cpu" | undefined, log: null });
  const rows = headRows(modelName, inputSize, tensors, weights);
  if (named && named.length !== rows) {
    const from = given ? "--classes" : `${saved ? "the run's" : ""} classes`;
    throw new UserError(`${from} name ${named.length} classes, ${weights} has ${rows}`);
  }
  const classes = named ?? Array.from({ length: rows }, (_, i) => `class ${i}`);
  const model = createModel(modelName, { numClasses: rows, inputSize });
  assignStateDict(model, tensors, weights);

  const start = performance.now();
  const predictions = await classifyImages(model, { pixels, count: paths.length, size }, {
    inputSize,
    batchSize: (v["batch-size"] as number | undefined) ?? 64,
    top: (v["top"] as number | undefined) ?? 3,
  });
  const seconds = (performance.now() - start) / 1000;
  model.dispose();
  tf.disposeVariables();
  const table: PredictionRow[] = predictions.map((p, i) => ({
    path: paths[i],
    top: p.classes.map((c, j) => ({ class: classes[c], probability: p.probabilities[j] })),
  }));
  console.log(formatPredictionTable(table));
  console.log(
    `\n${modelName}: ${paths.length} image(s) classified in ${seconds.toFixed(2)} s ` +
      `(resized to ${size}x${size}${size !== inputSize ? `, then ${inputSize}x${inputSize}` : ""})`,
  );

  const write = async (path: string, bytes: Uint8Array, what: string) => {
    await Deno.mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, bytes);
    console.log(`${what} written to ${path}`);
  };
  const text = (s: string) => new TextEncoder().encode(s);
  if (typeof outputs["--json"] === "string") {
    const report = {
      model: modelName,
      weights,
      dataset,
      input_size: inputSize,
      predictions: table,
      failed,
    };
    await write(outputs["--json"], text(JSON.stringify(report, null, 2) + "\n"), "JSON");
  }
  if (typeof outputs["--csv"] === "string") {
    await write(outputs["--csv"], text(predictionsCsv(table)), "CSV");
  }
  if (typeof outputs["--grid"] === "string") {
    const per = size * size * 3;
    const items = table.slice(0, 16).map((row, i) => ({
      pixels: pixels.subarray(i * per, (i + 1) * per),
      height: size,
      width: size,
      predicted: row.top[0].class,
      probability: row.top[0].probability,
    }));
    await write(outputs["--grid"], await renderPredictionGrid(items), `grid of ${items.length}`);
  }
  if (failed.length) {
    console.error(`error: ${failed.length} path(s) could not be classified (listed above)`);
    Deno.exit(1);
  }
});
