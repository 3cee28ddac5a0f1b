/**
 * The formats of a run folder's files ({@link RUN_FILES}): `config.json` (the resolved
 * configuration, {@link SavedRun}) and `metrics.jsonl` (one {@link EpochRecord} a line, appended
 * at the end of every epoch); the checkpoint's format is `checkpoint.ts`'s. Also the fixed-column
 * epoch log line. A run is written and read through `folder.ts`'s `RunFolder`.
 *
 * @module
 */
import { join } from "node:path";
import type { DatasetName } from "../data/load.ts";
import { createModel } from "../models/registry.ts";
import { stateEntries } from "../models/weights.ts";
import { UserError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/files.ts";

/** Name of the configuration file inside a run folder. */
const CONFIG_FILE = "config.json";
/** Name of the per-epoch metrics file inside a run folder. */
export const METRICS_FILE = "metrics.jsonl";

/** File names in a run folder. */
export const RUN_FILES = {
  config: CONFIG_FILE,
  checkpoint: "checkpoint.safetensors",
  /** The checkpoint before the last one, which `--resume` falls back to. */
  previous: "checkpoint.prev.safetensors",
  best: "best.safetensors",
  curves: "curves.png",
  metrics: METRICS_FILE,
  /** What `eval.ts` writes about a run (accuracy, loss, per class, confusion). */
  eval: "eval.json",
} as const;

/**
 * The number of classes of weights without a run: the rows of the model's head tensor.
 *
 * @param modelName the model the weights are for
 * @param inputSize its input size
 * @param tensors the weights' tensors by PyTorch name
 * @param weights the weights file, for the message
 * @returns the head's rows
 * @throws UserError when the weights lack the model's head
 */
export function headRows(
  modelName: string,
  inputSize: number,
  tensors: Map<string, { shape: number[] }>,
  weights: string,
): number {
  const probe = createModel(modelName, { numClasses: 1, inputSize });
  const head = stateEntries(probe).at(-1)!.name;
  probe.dispose();
  const rows = tensors.get(head)?.shape[0];
  if (!rows) throw new UserError(`${weights}: has no ${head}, the head of ${modelName}`);
  return rows;
}

/**
 * The fields of a run's training configuration that reading the run needs (the commands that
 * evaluate, export or predict with a run's weights). `TrainConfig` (`training/config.ts`), the
 * whole configuration, extends it.
 */
export interface RunSettings {
  /** Model name, e.g. `resnet20`. */
  model: string;
  /** `cifar10`, `cifar100` or `folder`. */
  dataset: DatasetName;
  /** Data folder; `data/` (downloading CIFAR when absent) when not given. */
  data?: string;
  /** Number of epochs. */
  epochs: number;
  /** Images per step. */
  batchSize: number;
  /** Height and width the images are resized to. */
  inputSize: number;
  /** Seed of the weights, the shuffle and the augmentation. */
  seed: number;
  /** Fraction of a single-folder dataset held out for validation. */
  valSplit: number;
}

/** The run's configuration as saved in `config.json` by a training run. */
export interface SavedRun extends RunConfig {
  /** The full training configuration (`TrainConfig`); its `batchSize` is the run's. */
  train: RunSettings;
  /** Class names of the dataset. */
  classes: string[];
  /** The tfjs backend the run started on. */
  backend?: string;
  /** The adapter it ran on (`"cpu"` on the cpu backend). */
  adapter?: string;
  /** Training images. */
  train_images?: number;
  /** Validation images. */
  val_images?: number;
}

/** What one training epoch measured. */
export interface EpochRecord {
  /** Epoch number, 1-based. */
  epoch: number;
  /** Learning rate used during the epoch. */
  lr: number;
  /** Mean training loss over the epoch. */
  train_loss: number;
  /** Training accuracy, 0..1. */
  train_acc: number;
  /** Validation loss after the epoch. */
  val_loss: number;
  /** Validation accuracy after the epoch, 0..1. */
  val_acc: number;
  /** Seconds spent training in the epoch; evaluation excluded. */
  epoch_time_s: number;
  /** Training images per second over the epoch. */
  img_per_s: number;
}

/** The resolved configuration of a run; extra keys are kept as they are. */
export interface RunConfig {
  /** Model name, e.g. `resnet20`. */
  model: string;
  /** Number of trainable parameters. */
  params: number;
  /** Dataset name or folder. */
  dataset: string;
  /** Number of epochs asked for. */
  epochs: number;
  /** Any other setting of the run. */
  [key: string]: unknown;
}

const RECORD_FIELDS = [
  "epoch",
  "lr",
  "train_loss",
  "train_acc",
  "val_loss",
  "val_acc",
  "epoch_time_s",
  "img_per_s",
] as const;

async function readText(path: string, dir: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UserError(`${path} not found: is ${dir} a run folder made by train.ts?`);
    }
    throw new UserError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

function parseConfig(text: string, path: string): RunConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UserError(
      `${path} is not valid JSON: ${(err as Error).message.replace(/\s*\n\s*/g, " ")}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UserError(`${path} must hold a JSON object`);
  }
  const obj = value as Record<string, unknown>;
  for (const key of ["model", "dataset"]) {
    if (typeof obj[key] !== "string") throw new UserError(`${path}: "${key}" must be a string`);
  }
  for (const key of ["params", "epochs"]) {
    if (typeof obj[key] !== "number" || !Number.isFinite(obj[key])) {
      throw new UserError(`${path}: "${key}" must be a number`);
    }
  }
  return obj as RunConfig;
}

function parseRecord(line: string, path: string, lineNo: number): EpochRecord {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new UserError(`${path}: line ${lineNo} is not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UserError(`${path}: line ${lineNo} must be a JSON object`);
  }
  const obj = value as Record<string, unknown>;
  for (const key of RECORD_FIELDS) {
    // JSON has no NaN: a diverged loss is written as null and read back as NaN.
    if (obj[key] === null && key !== "epoch") obj[key] = NaN;
    else if (typeof obj[key] !== "number") {
      throw new UserError(`${path}: line ${lineNo} lacks the number "${key}"`);
    }
  }
  return obj as unknown as EpochRecord;
}

/**
 * Reads a run folder: its `config.json` and every epoch of its `metrics.jsonl`.
 *
 * @param dir the run folder
 * @returns the configuration and the epoch records in file order (maybe none)
 * @throws {UserError} naming the file that is missing or malformed
 * @example
 * ```ts ignore
 * const { config, records } = await readRun("runs/resnet20");
 * console.log(config.model, records.at(-1)?.val_acc);
 * ```
 */
export async function readRun(dir: string): Promise<{ config: RunConfig; records: EpochRecord[] }> {
  const config = await readRunConfig(dir);
  const metricsPath = join(dir, METRICS_FILE);
  const records: EpochRecord[] = [];
  (await readText(metricsPath, dir)).split("\n").forEach((line, i) => {
    if (line.trim() !== "") records.push(parseRecord(line, metricsPath, i + 1));
  });
  return { config, records };
}

/**
 * Reads a run folder's `config.json`.
 *
 * @param dir the run folder
 * @returns the configuration
 * @throws {UserError} naming the file when it is missing or malformed
 */
export async function readRunConfig(dir: string): Promise<RunConfig> {
  const path = join(dir, CONFIG_FILE);
  return parseConfig(await readText(path, dir), path);
}

/**
 * Writes `config.json` into a run folder (made if needed), replacing any earlier one.
 *
 * @param dir the run folder
 * @param config the resolved configuration
 * @returns when the file is written
 * @example
 * ```ts ignore
 * await writeRunConfig("runs/a", { model: "resnet20", params: 272474, dataset: "cifar10",
 *   epochs: 150 });
 * ```
 */
export async function writeRunConfig(dir: string, config: RunConfig): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, CONFIG_FILE), encodeRunConfig(config));
}

/**
 * The bytes of `config.json`.
 *
 * @param config the resolved configuration
 * @returns indented JSON with a final newline
 */
export function encodeRunConfig(config: RunConfig): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n");
}

/**
 * The bytes of `metrics.jsonl`: one record a line (non-finite numbers as `null`).
 *
 * @param records the epochs' figures, in order
 * @returns the file
 */
export function encodeEpochRecords(records: readonly EpochRecord[]): Uint8Array {
  return new TextEncoder().encode(records.map((r) => JSON.stringify(r) + "\n").join(""));
}

/**
 * Appends one epoch to `metrics.jsonl` in a run folder (made if needed). Non-finite numbers are
 * written as `null` and read back by {@link readRun} as `NaN`.
 *
 * @param dir the run folder
 * @param record the epoch's figures
 * @returns when the line is written
 * @example
 * ```ts ignore
 * await appendEpochRecord("runs/a", record);
 * ```
 */
export async function appendEpochRecord(dir: string, record: EpochRecord): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, METRICS_FILE), JSON.stringify(record) + "\n", {
    append: true,
  });
}

/**
 * Replaces `metrics.jsonl` in a run folder (made if needed) with `records`, atomically: an
 * empty file for a run that has just started, the kept epochs for a resumed one.
 *
 * @param dir the run folder
 * @param records the epochs' figures, in order
 * @returns when the file is written
 */
export async function writeEpochRecords(dir: string, records: EpochRecord[]): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, METRICS_FILE), encodeEpochRecords(records));
}

/** Column widths of the epoch line, in order: epoch, lr, loss, acc, loss, acc, time, img/s. */
const WIDTHS = [9, 9, 10, 9, 10, 9, 9, 10] as const;
const HEADERS = [
  "epoch",
  "lr",
  "train_loss",
  "train_acc",
  "val_loss",
  "val_acc",
  "time",
  "img/s",
] as const;

/** `value` formatted, right-aligned in `width`; one that does not fit is written in e-notation. */
function fit(value: number, width: number, format: (v: number) => string, suffix = ""): string {
  let s = Number.isFinite(value) ? format(value) + suffix : String(value);
  for (let digits = 3; s.length > width && digits >= 0; digits--) {
    s = value.toExponential(digits) + suffix;
  }
  return s.padStart(width);
}

/**
 * The column header matching {@link formatEpochLine}.
 *
 * @returns one line, as wide as every epoch line
 * @example
 * ```ts
 * import { epochLineHeader } from "./records.ts";
 * console.log(epochLineHeader());
 * ```
 */
export function epochLineHeader(): string {
  return HEADERS.map((h, i) => h.padStart(WIDTHS[i])).join("  ");
}

/**
 * One fixed-column log line for an epoch: epoch/total, learning rate, train loss and accuracy,
 * validation loss and accuracy, training seconds of the epoch and training images per second.
 * Every line has the same width as {@link epochLineHeader} (up to 9999 epochs).
 *
 * @param r the epoch's figures
 * @param totalEpochs the number of epochs of the run
 * @returns the line, without a newline
 * @example
 * ```ts
 * import { formatEpochLine } from "./records.ts";
 * console.log(formatEpochLine({ epoch: 3, lr: 0.1, train_loss: 1.2, train_acc: 0.55,
 *   val_loss: 1.3, val_acc: 0.52, epoch_time_s: 41.2, img_per_s: 1213.6 }, 150));
 * ```
 */
export function formatEpochLine(r: EpochRecord, totalEpochs: number): string {
  const cols = [
    `${r.epoch}/${totalEpochs}`.padStart(WIDTHS[0]),
    fit(r.lr, WIDTHS[1], (v) => v.toExponential(2)),
    fit(r.train_loss, WIDTHS[2], (v) => v.toFixed(4)),
    fit(100 * r.train_acc, WIDTHS[3], (v) => v.toFixed(2), "%"),
    fit(r.val_loss, WIDTHS[4], (v) => v.toFixed(4)),
    fit(100 * r.val_acc, WIDTHS[5], (v) => v.toFixed(2), "%"),
    fit(r.epoch_time_s, WIDTHS[6], (v) => v.toFixed(1), "s"),
    fit(r.img_per_s, WIDTHS[7], (v) => v.toFixed(1)),
  ];
  return cols.join("  ");
}
