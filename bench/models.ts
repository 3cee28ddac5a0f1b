/**
 * `deno task bench [--model resnet20,regnet400mf] [--batch 64,512] [--steps N] [--warmup N]
 * [--backend webgpu|cpu] [--stock] [--eager] [--json]`: training and inference throughput, kernel dispatches per
 * training step and GPU memory, for every model and batch size given, on the adapter present.
 * The body of `bench.ts`. `bench/torch_bench.py` measures the same in PyTorch; `bench/gpu_run.sh` runs both on a GPU box.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { countDispatches } from "../webgpu/runtime/counters.ts";
import { BACKEND_NAMES, type BackendName, initBackend } from "../backend/backend.ts";
import { createModel, MODEL_NAMES, modelSpec } from "../models/registry.ts";
import { SGD } from "../training/optimizer.ts";
import { evalBatch, trainBatch } from "../training/step.ts";
import { CapturedEvalStep, CapturedTrainStep } from "../training/captured.ts";
import { type FlagSpec, helpText, parseFlags, runCli } from "../cli/args.ts";

const FLAGS: Record<string, FlagSpec> = {
  "model": {
    kind: "string",
    help: `models, comma-separated (default resnet20); valid: ${MODEL_NAMES.join(", ")}`,
  },
  "batch": { kind: "ints", help: "batch sizes, comma-separated (default 64)" },
  "steps": { kind: "int", help: "measured steps after the warm-up (default 10)" },
  "warmup": { kind: "int", help: "warm-up steps before measuring (default 2)" },
  "input-size": { kind: "int", help: "input size (default: the model's)" },
  "backend": { kind: "choice", choices: BACKEND_NAMES, help: "tfjs backend (default webgpu)" },
  "stock": { kind: "bool", help: "tfjs's own webgpu kernels, without this toolkit's (baseline)" },
  "eager": { kind: "bool", help: "every training step through tfjs (no captured-step replay)" },
  "json": { kind: "bool", help: "one JSON line per measurement instead of a table" },
  "help": { kind: "bool", help: "show this help" },
};

/** One measurement. */
interface Measurement {
  model: string;
  backend: string;
  adapter: string;
  batch: number;
  train_img_per_s: number;
  infer_img_per_s: number;
  dispatches_per_step: number;
  gpu_bytes: number;
  /** Host milliseconds per training step spent recording it (before waiting for the GPU). */
  host_ms_per_step: number;
}

async function measure(
  name: string,
  batch: number,
  run: {
    steps: number;
    warmup: number;
    inputSize: number;
    adapter: string;
    stock: boolean;
    eager: boolean;
  },
) {
  const { steps, warmup, inputSize, adapter, stock, eager } = run;
  const model = createModel(name, { inputSize, seed: 0 });
  const opt = new SGD({ lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const x = tf.randomNormal([batch, inputSize, inputSize, 3]) as tf.Tensor4D;
  const y = tf.randomUniform([batch], 0, 10, "int32") as tf.Tensor1D;
  const graph = eager ? null : new CapturedTrainStep(model, opt);
  let hostMs = 0;
  // A host read of every step's loss, as the training loop does it: issued right after the
  // step, awaited after the next step is recorded.
  let previous: Promise<unknown> = Promise.resolve();
  const step = async () => {
    const h0 = performance.now();
    const r = graph ? graph.run(x, y) : trainBatch(model, opt, x, y);
    hostMs += performance.now() - h0;
    const read = r.loss.data().finally(() => tf.dispose([r.loss, r.correct]));
    await previous;
    previous = read;
  };
  for (let i = 0; i < warmup; i++) await step();
  await previous;
  hostMs = 0;
  let t0 = 0, trainSeconds = 0;
  const total = await countDispatches(async () => {
    t0 = performance.now();
    for (let i = 0; i < steps; i++) await step();
    await previous;
    trainSeconds = (performance.now() - t0) / 1000;
  });
  const dispatches = total / steps;
  const evalGraph = eager ? null : new CapturedEvalStep(model);
  const infer = async () => {
    const r = evalGraph ? evalGraph.run(x, y) : tf.tidy(() => evalBatch(model, x, y));
    await r.logits.data();
    tf.dispose([r.logits, r.lossSum, r.correct]);
  };
  for (let i = 0; i < warmup; i++) await infer();
  t0 = performance.now();
  for (let i = 0; i < steps; i++) await infer();
  const inferSeconds = (performance.now() - t0) / 1000;
  const memory = tf.memory() as tf.MemoryInfo & {
    numBytesAllocatedInGPU?: number;
    numBytesInGPU?: number;
  };
  const result: Measurement = {
    model: name,
    backend: stock
      ? `${tf.getBackend()}-stock`
      : eager
      ? `${tf.getBackend()}-eager`
      : tf.getBackend(),
    adapter,
    batch,
    train_img_per_s: (batch * steps) / trainSeconds,
    infer_img_per_s: (batch * steps) / inferSeconds,
    dispatches_per_step: dispatches,
    gpu_bytes: memory.numBytesAllocatedInGPU ?? memory.numBytesInGPU ?? memory.numBytes,
    host_ms_per_step: hostMs / steps,
  };
  tf.dispose([x, y]);
  graph?.dispose();
  evalGraph?.dispose();
  opt.dispose();
  model.dispose();
  return result;
}

/**
 * The benchmark's command line (`deno task bench`).
 *
 * @param args the command-line arguments
 */
export async function benchModels(args: string[]): Promise<void> {
  const { values: v } = parseFlags(args, FLAGS);
  if (v["help"]) {
    console.log(helpText("usage: deno task bench [flags]", FLAGS));
    return;
  }
  const models = ((v["model"] as string | undefined) ?? "resnet20").split(",").map((m) => m.trim());
  for (const name of models) modelSpec(name); // a one-line error listing the valid names
  const info = await initBackend({
    backend: v["backend"] as BackendName | undefined,
    log: v["json"] ? null : undefined,
    fastKernels: !v["stock"],
  });
  const batches = (v["batch"] as number[] | undefined) ?? [64];
  const steps = (v["steps"] as number | undefined) ?? 10;
  const warmup = (v["warmup"] as number | undefined) ?? 2;
  const rows: Measurement[] = [];
  for (const name of models) {
    const size = (v["input-size"] as number | undefined) ?? modelSpec(name).defaultInputSize;
    for (const batch of batches) {
      const m = await measure(name, batch, {
        steps,
        warmup,
        inputSize: size,
        adapter: info.adapter,
        stock: v["stock"] === true,
        eager: v["eager"] === true,
      });
      rows.push(m);
      if (v["json"]) console.log(JSON.stringify(m));
    }
  }
  if (!v["json"]) {
    console.log(`adapter: ${info.adapter} (${info.backend})`);
    console.log(
      "model               batch   train img/s   infer img/s   dispatches/step    GPU MiB" +
        "   host ms/step",
    );
    for (const m of rows) {
      console.log(
        `${m.model.padEnd(18)} ${String(m.batch).padStart(6)} ${
          m.train_img_per_s.toFixed(1).padStart(13)
        } ` +
          `${m.infer_img_per_s.toFixed(1).padStart(13)} ${
            m.dispatches_per_step.toFixed(0).padStart(17)
          } ` +
          `${(m.gpu_bytes / 2 ** 20).toFixed(1).padStart(10)} ` +
          `${m.host_ms_per_step.toFixed(2).padStart(14)}`,
      );
    }
  }
}

if (import.meta.main) await runCli(() => benchModels(Deno.args));
