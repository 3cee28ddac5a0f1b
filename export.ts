/**
 * `deno task export --run <dir> [--format onnx|safetensors|tfjs] [--out <path>]` (or `--model
 * <name> --weights <file>`): writes a trained model for other runtimes: ONNX (opset 17, NCHW
 * float32 input), a safetensors state dict (so `.pth` in, safetensors out), or the TensorFlow.js
 * LayersModel format.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { tf } from "./deps.ts";
import { initBackend } from "./backend/backend.ts";
import { exportOnnx, ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUT } from "./models/onnx.ts";
import { createModel, MODEL_CHOICES, modelSpec } from "./models/registry.ts";
import { assignStateDict, readStateDict, saveWeights } from "./models/weights.ts";
import { saveLayersModel } from "./models/tfjs_io.ts";
import { headRows } from "./run/records.ts";
import { resolveModelSource } from "./run/folder.ts";
import { type FlagSpec, helpText, parseFlags, runCli } from "./cli/args.ts";
import { writeFileAtomic } from "./util/files.ts";
import { UserError } from "./util/errors.ts";

const FORMATS = ["onnx", "safetensors", "tfjs"] as const;
const EXTENSION = { onnx: ".onnx", safetensors: ".safetensors", tfjs: "-tfjs" } as const;

const FLAGS: Record<string, FlagSpec> = {
  "run": { kind: "string", help: "a run folder: its model, classes, input size and best weights" },
  "model": { kind: "choice", choices: MODEL_CHOICES, help: "model (with --weights)" },
  "weights": { kind: "string", help: "weights with PyTorch names: safetensors or a .pth" },
  "input-size": { kind: "int", help: "image size of the exported input (default: the run's)" },
  "format": { kind: "choice", choices: FORMATS, help: "what to write (default onnx)" },
  "out": {
    kind: "string",
    help: "file (tfjs: folder) to write (default <run>/model.onnx, ...; runs/export/<model>...)",
  },
  "help": { kind: "bool", help: "show this help" },
};

runCli(async () => {
  const { values: v, positionals } = parseFlags(Deno.args, FLAGS);
  if (v["help"]) {
    console.log(
      helpText(
        "usage: deno task export (--run <dir> | --model <name> --weights <file>) " +
          "[--format onnx|safetensors|tfjs] [--out <path>]",
        FLAGS,
      ),
    );
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
  const format = (v["format"] as typeof FORMATS[number] | undefined) ?? "onnx";
  const inputSize = (v["input-size"] as number | undefined) ?? saved?.train.inputSize ??
    modelSpec(modelName).defaultInputSize;
  const out = (v["out"] as string | undefined) ??
    (run
      ? join(run, format === "tfjs" ? "tfjs" : `model${EXTENSION[format]}`)
      : join("runs", "export", `${modelName}${EXTENSION[format]}`));

  await initBackend({ backend: "cpu", log: null });
  const { tensors, notes } = await readStateDict(weights);
  for (const note of notes) console.log(`${weights}: ${note}`);
  const numClasses = saved?.classes.length ?? headRows(modelName, inputSize, tensors, weights);
  const model = createModel(modelName, { numClasses, inputSize });
  assignStateDict(model, tensors, weights);

  if (format === "tfjs") {
    await saveLayersModel(model, out);
    console.log(`wrote ${out}/ (TensorFlow.js LayersModel: model.json, weights.bin)`);
  } else {
    const bytes = format === "onnx" ? await exportOnnx(model) : await saveWeights(model);
    await Deno.mkdir(dirname(out), { recursive: true });
    await writeFileAtomic(out, bytes);
    const what = format === "onnx"
      ? `ONNX opset ${ONNX_OPSET}: "${ONNX_INPUT}" [N, 3, ${inputSize}, ${inputSize}] float32 ` +
        `NCHW, normalized as (pixel / 255 - 0.5) / 0.5; "${ONNX_OUTPUT}" [N, ${numClasses}]`
      : "safetensors state dict with PyTorch names";
    console.log(`wrote ${out} (${bytes.length.toLocaleString("en-US")} bytes; ${what})`);
  }
  model.dispose();
  tf.disposeVariables();
});
