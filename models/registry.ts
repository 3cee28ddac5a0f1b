/**
 * The model zoo: every model by name, with its family's builder and defaults. Adding a variant
 * is one line here (`resnet32: resnet({ depths: [5, 5, 5], widths: [16, 32, 64] })`).
 *
 * @module
 */
import type { tf } from "../deps.ts";
import { isTorchModule } from "./layers.ts";
import { buildRegNet, REGNET_CONFIGS } from "./regnet.ts";
import { type BuildOptions, buildResNet, type ResNetConfig } from "./resnet.ts";
import { UserError } from "../util/errors.ts";

/** The family a model belongs to, which sets its training preset. */
export type ModelFamily = "resnet" | "regnet";

/** A model of the zoo. */
export interface ModelSpec {
  /** The family (and so the training preset). */
  family: ModelFamily;
  /** Input size used when none is given. */
  defaultInputSize: number;
  /** One line on what it is. */
  description: string;
  /** Builds it. */
  build(options: BuildOptions): tf.LayersModel;
}

const CIFAR_WIDTHS = [16, 32, 64] as const;
const resnet = (config: ResNetConfig, description: string): ModelSpec => ({
  family: "resnet",
  defaultInputSize: 32,
  description,
  build: (o) => buildResNet(config, o),
});
const regnet = (config: keyof typeof REGNET_CONFIGS, description: string): ModelSpec => ({
  family: "regnet",
  defaultInputSize: 224,
  description,
  build: (o) => buildRegNet(REGNET_CONFIGS[config], o),
});

/** Every model name, in the zoo's order. */
export const MODEL_NAMES = [
  "resnet20",
  "resnet20-convrnn",
  "resnet20-convgru",
  "resnet32",
  "resnet56",
  "regnet400mf",
  "regnet800mf",
] as const;

/** A model name. */
export type ModelName = typeof MODEL_NAMES[number];

/** Every model, by the name the CLI and {@link createModel} take. */
export const MODELS: Readonly<Record<ModelName, ModelSpec>> = {
  "resnet20": resnet({ depths: [3, 3, 3], widths: CIFAR_WIDTHS }, "the reference code's ResNet20"),
  "resnet20-convrnn": resnet(
    { depths: [3, 3, 3], widths: CIFAR_WIDTHS, cell: "rnn" },
    "ResNet20 with a ConvRNN cell in every block",
  ),
  "resnet20-convgru": resnet(
    { depths: [3, 3, 3], widths: CIFAR_WIDTHS, cell: "gru" },
    "ResNet20 with a ConvGRU cell in every block",
  ),
  "resnet32": resnet({ depths: [5, 5, 5], widths: CIFAR_WIDTHS }, "ResNet32 (He et al.)"),
  "resnet56": resnet({ depths: [9, 9, 9], widths: CIFAR_WIDTHS }, "ResNet56 (He et al.)"),
  "regnet400mf": regnet("regnet400mf", "torchvision's regnet_y_400mf"),
  "regnet800mf": regnet("regnet800mf", "torchvision's regnet_y_800mf"),
};

/** torchvision's names of our models, taken everywhere a model name is (CLI flags, {@link createModel}). */
export const MODEL_ALIASES: Readonly<Record<string, ModelName>> = {
  "regnet_y_400mf": "regnet400mf",
  "regnet_y_800mf": "regnet800mf",
};

/** Every name a model may be given by: {@link MODEL_NAMES}, then torchvision's {@link MODEL_ALIASES}. */
export const MODEL_CHOICES: readonly string[] = [...MODEL_NAMES, ...Object.keys(MODEL_ALIASES)];

/**
 * Our name of a model given by our name or torchvision's, or a one-line error listing the valid
 * names.
 *
 * @param name `regnet400mf`, `regnet_y_400mf`, ...
 * @returns the name in {@link MODEL_NAMES}
 * @example
 * ```ts
 * import { canonicalModelName } from "./registry.ts";
 * canonicalModelName("regnet_y_400mf"); // "regnet400mf"
 * ```
 */
export function canonicalModelName(name: string): ModelName {
  if (Object.hasOwn(MODELS, name)) return name as ModelName;
  if (Object.hasOwn(MODEL_ALIASES, name)) return MODEL_ALIASES[name];
  throw new UserError(`unknown model "${name}"; valid models: ${MODEL_CHOICES.join(", ")}`);
}

/** The zoo entry of `name` (ours or torchvision's), or a one-line error listing the valid names. */
export function modelSpec(name: string): ModelSpec {
  return MODELS[canonicalModelName(name)];
}

/** Options of {@link createModel}. */
export interface CreateModelOptions {
  /** Output classes; 10 when absent. */
  numClasses?: number;
  /** Height and width of the NHWC input; the model's default (32 or 224) when absent. */
  inputSize?: number;
  /**
   * Seed of the weight initializers: equal seeds give equal weights. When absent the weights are
   * random, different on every call (as PyTorch without `torch.manual_seed`); `train.ts` passes
   * `--seed` (default 0).
   */
  seed?: number;
}

/**
 * Builds a model of the zoo with fresh weights (PyTorch's initialization schemes).
 *
 * @param name one of {@link MODEL_NAMES}, or torchvision's name ({@link MODEL_ALIASES})
 * @param options classes, input size and seed
 * @returns a tfjs LayersModel: NHWC images normalized with mean 0.5 and std 0.5 in, logits out
 * @example
 * ```ts
 * import { initBackend } from "../backend/backend.ts";
 * import { createModel } from "./registry.ts";
 * await initBackend({ log: null });
 * const model = createModel("resnet20", { numClasses: 10 });
 * console.log(model.outputs[0].shape); // [null, 10]
 * model.dispose();
 * ```
 */
export function createModel(name: string, options: CreateModelOptions = {}): tf.LayersModel {
  const spec = modelSpec(name);
  const numClasses = options.numClasses ?? 10;
  const inputSize = options.inputSize ?? spec.defaultInputSize;
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new UserError(`numClasses: expected a positive integer, got ${numClasses}`);
  }
  if (!Number.isInteger(inputSize) || inputSize < 8) {
    throw new UserError(`inputSize: expected an integer of at least 8, got ${inputSize}`);
  }
  return spec.build({ numClasses, inputSize, name: canonicalModelName(name), seed: options.seed });
}

/**
 * Trainable parameter count, as `sum(p.numel() for p in model.parameters())` in PyTorch.
 *
 * @param model a model of the zoo
 * @returns the number of trainable scalars
 */
export function countParams(model: tf.LayersModel): number {
  return model.trainableWeights.reduce((n, w) => n + w.shape.reduce((a, b) => a! * b!, 1)!, 0);
}

/**
 * A readable summary: one line per layer that holds weights (PyTorch name, output shape,
 * parameters), then the totals.
 *
 * @param model a model of the zoo
 * @returns the summary text
 */
export function modelSummary(model: tf.LayersModel): string {
  const rows: string[][] = [["layer", "output shape", "params"]];
  for (const layer of model.layers) {
    if (!isTorchModule(layer)) continue;
    const params = layer.trainableWeights.reduce(
      (n, w) => n + w.shape.reduce((a, b) => a! * b!, 1)!,
      0,
    );
    const shape = JSON.stringify(layer.outputShape).replaceAll("null", "N");
    rows.push([layer.name, shape, params.toLocaleString("en-US")]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) =>
    r.map((cell, c) => c === 2 ? cell.padStart(widths[c]) : cell.padEnd(widths[c])).join("  ")
  );
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  lines.push(`${model.name}: ${countParams(model).toLocaleString("en-US")} trainable parameters`);
  return lines.join("\n");
}
