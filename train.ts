/**
 * `deno task train --model <name> [flags]`: trains a model with the reference code's recipe (or the
 * flags given), validating after every epoch, into a run folder. `--help` lists the flags.
 *
 * @module
 */
import { BACKEND_NAMES, initBackend } from "./backend/backend.ts";
import { DATASET_NAMES } from "./data/load.ts";
import { MODEL_CHOICES } from "./models/registry.ts";
import { type FlagSpec, type FlagValues, helpText, parseFlags, runCli } from "./cli/args.ts";
import { resolveConfig, type TrainConfig } from "./training/config.ts";
import { resumedConfig, train } from "./training/loop.ts";
import { UserError } from "./util/errors.ts";

const FLAGS: Record<string, FlagSpec> = {
  "model": {
    kind: "choice",
    choices: MODEL_CHOICES,
    help: "model to train (required unless --resume)",
  },
  "dataset": { kind: "choice", choices: DATASET_NAMES, help: "dataset (default cifar10)" },
  "data": { kind: "string", help: "data folder; without it CIFAR is downloaded into data/" },
  "epochs": { kind: "int", help: "epochs (preset: 150 ResNets, 10 RegNet)" },
  "batch-size": { kind: "int", help: "images per step (preset 64)" },
  "lr": { kind: "number", help: "initial learning rate (preset 0.1)" },
  "lr-steps": {
    kind: "ints",
    help: "0-based epochs where lr is multiplied by 0.1 (preset 80 / 8)",
  },
  "momentum": { kind: "number", help: "SGD momentum (preset 0.9)" },
  "weight-decay": { kind: "number", help: "SGD weight decay (preset 1e-4 ResNets, 0 RegNet)" },
  "input-size": { kind: "int", help: "image size fed to the model (preset 32 / 224)" },
  "augment": { kind: "bool", help: "random crop (4-pixel padding) and horizontal flip" },
  "seed": { kind: "uint", help: "seed of weights, shuffle and augmentation (default 0)" },
  "backend": { kind: "choice", choices: BACKEND_NAMES, help: "tfjs backend (default webgpu)" },
  "limit": { kind: "int", help: "use the first N training and N validation images (smoke runs)" },
  "val-split": { kind: "number", help: "held-out fraction of a single-folder dataset (0.2)" },
  "skip-bad-images": {
    kind: "bool",
    help: "skip unreadable images with a count instead of stopping",
  },
  "eager": {
    kind: "bool",
    help: "run every step through tfjs (no captured-step replay on webgpu; same results, slower)",
  },
  "init-weights": {
    kind: "string",
    help: "start from these weights (safetensors or .pth); tensors that do not fit are listed",
  },
  "out": { kind: "string", help: "new run folder (default runs/<model>-<timestamp>)" },
  "resume": { kind: "string", help: "continue the run in this folder where it stopped" },
  "help": { kind: "bool", help: "show this help" },
};

/** Flags that are not fields of the training configuration. */
const RUN_FLAGS = new Set(["model", "out", "resume", "eager", "help"]);

/** The configuration fields given on the command line: `--batch-size` sets `batchSize`, ... */
function overrides(v: FlagValues): Partial<TrainConfig> {
  return Object.fromEntries(
    Object.entries(v)
      .filter(([flag]) => !RUN_FLAGS.has(flag))
      .map(([flag, value]) => [flag.replace(/-(\w)/g, (_, c: string) => c.toUpperCase()), value]),
  ) as Partial<TrainConfig>;
}

runCli(async () => {
  const { values, positionals } = parseFlags(Deno.args, FLAGS);
  if (values["help"]) {
    console.log(helpText("usage: deno task train --model <name> [flags]", FLAGS));
    return;
  }
  if (positionals.length) {
    throw new UserError(`unexpected argument "${positionals[0]}"; see --help`);
  }
  const resume = values["resume"] as string | undefined;
  if (!values["model"] && !resume) {
    throw new UserError(`--model is required; valid models: ${MODEL_CHOICES.join(", ")}`);
  }
  const config = resume
    ? await resumedConfig(resume, values["epochs"] as number | undefined)
    : resolveConfig(values["model"] as string, overrides(values));
  const backend = await initBackend({ backend: config.backend, log: (l) => console.log(l) });
  const stop = new AbortController();
  const onSigint = () => {
    if (stop.signal.aborted) Deno.exit(130);
    console.error("\nCtrl-C: finishing the current step (press again to quit at once)");
    stop.abort();
  };
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    const result = await train(config, {
      out: values["out"] as string | undefined,
      progress: true,
      signal: stop.signal,
      eager: values["eager"] === true,
      backend,
    }, resume);
    if (result.interrupted) Deno.exitCode = 130;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
});
