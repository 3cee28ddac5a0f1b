/**
 * The one data entry point of `train.ts` and `eval.ts`: a dataset name, a folder and a split in,
 * an {@link ImageDataset} out. CIFAR without `--data` is downloaded into `data/` when absent;
 * with `--data DIR` the local copy is used and the network is never touched.
 *
 * @module
 */
import { UserError } from "../util/errors.ts";
import { loadCifar } from "./cifar.ts";
import type { ImageDataset } from "./dataset.ts";
import { ensureCifar } from "./download.ts";
import { loadImageFolder } from "./folder.ts";

/** The dataset names `--dataset` accepts. */
export const DATASET_NAMES = ["cifar10", "cifar100", "folder"] as const;
/** A dataset name. */
export type DatasetName = typeof DATASET_NAMES[number];

/** The folder CIFAR is downloaded into when no `dir` is given. */
export const DEFAULT_DATA_DIR = "data";

/** Options of {@link loadDataset}. */
export interface LoadDatasetOptions {
  /** `cifar10`, `cifar100` or `folder` (an image folder of one's own). */
  dataset: DatasetName;
  /**
   * The data folder (`--data`). For CIFAR: given, it is used as is and the network is never
   * touched; absent, `data/` is used and the archive is downloaded there when missing. Required
   * for `folder`.
   */
  dir?: string;
  /** Which split. */
  split: "train" | "test";
  /** The model's input size: image folders are resized to it when loaded (CIFAR stays 32). */
  inputSize: number;
  /** Whether CIFAR may be downloaded when `dir` is absent; true when absent. */
  download?: boolean;
  /** Image folders in one-folder layout: fraction held out as test (0.2 when absent). */
  valSplit?: number;
  /** Image folders in one-folder layout: seed of the split (0 when absent). */
  seed?: number;
  /** Image folders: skip unreadable images with a count instead of failing. */
  skipBadImages?: boolean;
  /** Progress and warnings; `console.error` when absent, nowhere when `null`. */
  log?: ((line: string) => void) | null;
}

/**
 * Loads one split of the named dataset.
 *
 * @param options dataset, folder, split, input size and loader options
 * @returns the split
 * @example
 * ```ts ignore
 * import { loadDataset } from "./load.ts";
 * const test = await loadDataset({ dataset: "cifar10", split: "test", inputSize: 32 });
 * console.log(test.size); // 10000
 * ```
 */
export async function loadDataset(options: LoadDatasetOptions): Promise<ImageDataset> {
  const { dataset, split, log } = options;
  if (!(DATASET_NAMES as readonly string[]).includes(dataset)) {
    throw new UserError(
      `--dataset: unknown dataset "${dataset}"; valid: ${DATASET_NAMES.join(", ")}`,
    );
  }
  if (split !== "train" && split !== "test") {
    throw new UserError(`split: expected "train" or "test", got "${split}"`);
  }
  if (dataset === "folder") {
    if (options.dir === undefined) {
      throw new UserError(
        `--dataset folder needs --data DIR (DIR/<class>/* or DIR/train/<class>/*)`,
      );
    }
    return await loadImageFolder(options.dir, {
      split,
      inputSize: options.inputSize,
      valSplit: options.valSplit,
      seed: options.seed,
      skipBadImages: options.skipBadImages,
      log,
    });
  }
  if (options.dir !== undefined) {
    return await loadCifar(options.dir, { variant: dataset, split, log });
  }
  const folder = options.download === false
    ? DEFAULT_DATA_DIR
    : await ensureCifar(DEFAULT_DATA_DIR, { variant: dataset, log });
  return await loadCifar(folder, { variant: dataset, split, log });
}
