/**
 * The training configuration: the reference code's recipes as presets per model family, every field
 * overridable from the command line, resolved once and saved with the run.
 *
 * @module
 */
import type { BackendName } from "../backend/backend.ts";
import type { DatasetName } from "../data/load.ts";
import { canonicalModelName, type ModelFamily, modelSpec } from "../models/registry.ts";
import type { RunSettings } from "../run/records.ts";

/**
 * Everything a training run depends on; saved whole in the run's `config.json` (`train`), where
 * the commands that read a run find its {@link RunSettings}.
 */
export interface TrainConfig extends RunSettings {
  /** Model name (see `MODEL_NAMES`). */
  model: string;
  /** `cifar10`, `cifar100` or `folder`. */
  dataset: DatasetName;
  /** Data folder; `data/` (downloading CIFAR when absent) when not given. */
  data?: string;
  /** Number of epochs. */
  epochs: number;
  /** Images per step. */
  batchSize: number;
  /** Initial learning rate. */
  lr: number;
  /** 0-based epochs from which the learning rate is multiplied by `lrGamma` (the reference code: `epoch >= 80`). */
  lrSteps: number[];
  /** Learning-rate factor at each step. */
  lrGamma: number;
  /** SGD momentum. */
  momentum: number;
  /** SGD weight decay (L2 added to the gradient). */
  weightDecay: number;
  /** Height and width the images are resized to. */
  inputSize: number;
  /** Random crop (4-pixel padding) and horizontal flip. */
  augment: boolean;
  /** Seed of the weights, the shuffle and the augmentation. */
  seed: number;
  /** tfjs backend. */
  backend: BackendName;
  /** Train on the first N training images and validate on the first N test images. */
  limit?: number;
  /** Fraction of a single-folder dataset held out for validation. */
  valSplit: number;
  /** Skip unreadable images instead of stopping. */
  skipBadImages: boolean;
  /**
   * Weights to start from (safetensors or a PyTorch `.pth`), for fine-tuning: the tensors that
   * fit are loaded, the others (a head of another size) keep their initialization and are listed.
   */
  initWeights?: string;
}

/** The reference code's recipe of each family. */
export const PRESETS: Record<ModelFamily, Omit<TrainConfig, "model" | "dataset" | "backend">> = {
  // ResNet20 and its recurrent variants: 150 epochs, batch 64, lr 0.1 then 0.01 from epoch 80.
  resnet: {
    epochs: 150,
    batchSize: 64,
    lr: 0.1,
    lrSteps: [80],
    lrGamma: 0.1,
    momentum: 0.9,
    weightDecay: 1e-4,
    inputSize: 32,
    augment: false,
    seed: 0,
    valSplit: 0.2,
    skipBadImages: false,
  },
  // RegNetY-400MF: 10 epochs, batch 64, images resized to 224, lr 0.1 then 0.01 from epoch 8,
  // no weight decay (the reference code's optimizer had none).
  regnet: {
    epochs: 10,
    batchSize: 64,
    lr: 0.1,
    lrSteps: [8],
    lrGamma: 0.1,
    momentum: 0.9,
    weightDecay: 0,
    inputSize: 224,
    augment: false,
    seed: 0,
    valSplit: 0.2,
    skipBadImages: false,
  },
};

/**
 * The model's preset with the given overrides on top.
 *
 * @param model the model name
 * @param overrides fields given on the command line
 * @returns the resolved configuration
 */
export function resolveConfig(model: string, overrides: Partial<TrainConfig>): TrainConfig {
  const preset = PRESETS[modelSpec(model).family];
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return {
    ...preset,
    dataset: "cifar10",
    backend: "webgpu",
    ...defined,
    model: canonicalModelName(model),
  } as TrainConfig;
}

/**
 * The learning rate of a 0-based epoch: `lr * gamma^(number of steps <= epoch)`.
 *
 * @example
 * ```ts
 * import { learningRate, resolveConfig } from "./config.ts";
 * const c = resolveConfig("resnet20", {});
 * [learningRate(c, 79), learningRate(c, 80)]; // [0.1, 0.01] (to rounding)
 * ```
 */
export function learningRate(
  config: Pick<TrainConfig, "lr" | "lrSteps" | "lrGamma">,
  epoch: number,
): number {
  const steps = config.lrSteps.filter((s) => epoch >= s).length;
  return config.lr * config.lrGamma ** steps;
}
