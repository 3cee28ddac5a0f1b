/**
 * A run folder, the one place that writes a training run to disk and reads it back: it creates
 * a new run (never over another run's files), resumes one where it stopped, and writes, each
 * atomically through {@link RunFolder}'s one write method, the configuration, the epoch records,
 * the checkpoint, the best weights and the curves. `eval.ts`, `export.ts` and `predict.ts` read a
 * run through it ({@link resolveModelSource}).
 *
 * It knows nothing of how training works: `training/` drives it (training imports run, never
 * the reverse), and an optimizer is anything with momentum buffers ({@link OptimizerState}).
 *
 * @module
 */
import { join } from "node:path";
import type { tf } from "../deps.ts";
import { saveWeights } from "../models/weights.ts";
import { compareTable } from "../report/compare.ts";
import { renderCurves } from "../report/curves.ts";
import { requireWrite, UserError } from "../util/errors.ts";
import { WriteError, writeFileAtomic } from "../util/files.ts";
import {
  encodeCheckpoint,
  loadCheckpoint,
  type OptimizerState,
  type PartialEpoch,
  type Progress,
} from "./checkpoint.ts";
import {
  encodeEpochRecords,
  encodeRunConfig,
  type EpochRecord,
  readRun,
  readRunConfig,
  RUN_FILES,
  type SavedRun,
} from "./records.ts";

/** A file of a run folder, by its key in {@link RUN_FILES}. */
export type RunFile = keyof typeof RUN_FILES;

/**
 * A training run's folder. Made by {@link RunFolder.create} (a new run, then
 * {@link RunFolder.start}), {@link RunFolder.resume} (then {@link RunFolder.restore}) or
 * {@link RunFolder.open} (to read it); then {@link RunFolder.recordEpoch} at the end of every
 * epoch and {@link RunFolder.checkpointStop} when a run stops in the middle of one.
 *
 * @example
 * ```ts ignore
 * const run = await RunFolder.open("runs/resnet20-20250101-120000");
 * console.log(run.config.model, run.records.at(-1)?.val_acc, run.path("best"));
 * ```
 */
export class RunFolder {
  /** The folder. */
  readonly dir: string;
  #config: SavedRun | undefined;
  #records: EpochRecord[];
  #progress: Progress = { epoch: 0, bestAccuracy: 0, bestEpoch: 0 };
  /** What the checkpoint file holds, in words (`null` before the first one is written). */
  #kept: string | null = null;
  /** Whether the checkpoint file is known good, so that it may become the previous one. */
  #checkpointGood = false;
  /**
   * Called after a checkpoint's or the best weights' tensors are read, before they are written:
   * the training loop checks there that the device did not fail (so wrong numbers never replace
   * a good checkpoint).
   */
  verifyReads: () => void = () => {};

  private constructor(dir: string, config: SavedRun | undefined, records: EpochRecord[]) {
    this.dir = dir;
    this.#config = config;
    this.#records = records;
  }

  /**
   * `runs/<model>-<YYYYMMDD-HHMMSS>`, the folder of a run given no `--out`.
   *
   * @param model the model name
   * @param now the time stamped (UTC)
   * @returns the folder
   */
  static defaultDir(model: string, now: Date = new Date()): string {
    const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
    return join("runs", `${model}-${stamp}`);
  }

  /**
   * A new run in `dir`, checked but not yet written ({@link RunFolder.start} writes it): a folder
   * that holds files (another run's, whose metrics would mix with this one's) is refused, and so
   * is one the process may not write.
   *
   * @param dir the folder (made by `start` when absent; an empty one is fine)
   * @returns the run folder
   * @throws {UserError} when `dir` holds files, is a file, or may not be written
   */
  static async create(dir: string): Promise<RunFolder> {
    if (await holdsFiles(dir)) {
      throw new UserError(
        `--out ${dir} already holds files (a run folder?): continue that run with ` +
          `--resume ${dir}, or give a fresh --out`,
      );
    }
    await requireWrite(dir, "--out", "train.ts");
    return new RunFolder(dir, undefined, []);
  }

  /**
   * An existing run, to read: its configuration and epoch records.
   *
   * @param dir the run folder
   * @returns the run folder
   * @throws {UserError} naming the file that is missing or malformed
   */
  static async open(dir: string): Promise<RunFolder> {
    const { config, records } = await readRun(dir);
    return new RunFolder(dir, config as SavedRun, records);
  }

  /**
   * An existing run, to continue ({@link RunFolder.restore} loads its checkpoint): its
   * configuration, and the check that the process may write the folder.
   *
   * @param dir the run folder
   * @returns the run folder
   * @throws {UserError} when `config.json` is missing or malformed, or `dir` may not be written
   */
  static async resume(dir: string): Promise<RunFolder> {
    const config = await readRunConfig(dir) as SavedRun;
    await requireWrite(dir, "--resume", "train.ts");
    // Temporary files of a process killed in the middle of a write: never trusted, removed.
    for await (const entry of Deno.readDir(dir)) {
      if (/\.tmp-\d+$/.test(entry.name)) await Deno.remove(join(dir, entry.name));
    }
    return new RunFolder(dir, config, []);
  }

  /** The saved configuration (after `start`, `open` or `resume`). */
  get config(): SavedRun {
    if (!this.#config) throw new Error(`run folder ${this.dir}: not started`);
    return this.#config;
  }

  /** The epochs recorded, in order. */
  get records(): readonly EpochRecord[] {
    return this.#records;
  }

  /** Epochs done, best accuracy and its epoch, and the steps done of a stopped epoch. */
  get progress(): Readonly<Progress> {
    return this.#progress;
  }

  /**
   * What the checkpoint file holds, in words (`the checkpoint of epoch 3`, `the checkpoint at
   * step 5 of epoch 2`), once one is written or restored.
   */
  get kept(): string | null {
    return this.#kept;
  }

  /**
   * The path of one of the run's files.
   *
   * @param file its key in {@link RUN_FILES}
   * @returns `dir/<name>`
   */
  path(file: RunFile): string {
    return join(this.dir, RUN_FILES[file]);
  }

  /**
   * Starts a new run: writes `config.json`, an empty `metrics.jsonl` and the initial weights as
   * the checkpoint, so that a run stopped (or killed) before its first checkpoint resumes from
   * the start of epoch 1 with the same weights.
   *
   * @param config the configuration to save
   * @param model the model, as initialized
   * @param opt its optimizer
   */
  async start(config: SavedRun, model: tf.LayersModel, opt: OptimizerState): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true });
    this.#config = config;
    await this.#write("config", encodeRunConfig(config));
    await this.#write("metrics", encodeEpochRecords(this.#records));
    await this.#writeCheckpoint(model, opt);
  }

  /**
   * Restores a resumed run: model and optimizer from the checkpoint, and the records of the
   * epochs it holds. A run killed after writing an epoch's record but before its checkpoint
   * repeats that epoch, so that record is dropped here (and `metrics.jsonl` rewritten). When the
   * checkpoint is missing, truncated or corrupt (a tensor failing its checksum), the previous
   * one (`checkpoint.prev.safetensors`) is used instead, and `log` says so in one line.
   *
   * @param model the model (same architecture)
   * @param opt its optimizer
   * @param log where the fallback to the previous checkpoint is told
   * @returns the progress saved with the checkpoint
   * @throws {UserError} when neither checkpoint can be used, or the records are malformed
   */
  async restore(
    model: tf.LayersModel,
    opt: OptimizerState,
    log: (line: string) => void = () => {},
  ): Promise<Progress> {
    try {
      this.#progress = await loadCheckpoint(this.path("checkpoint"), model, opt);
      this.#checkpointGood = true;
    } catch (latest) {
      if (!(latest instanceof UserError)) throw latest;
      try {
        this.#progress = await loadCheckpoint(this.path("previous"), model, opt);
      } catch (previous) {
        if (!(previous instanceof UserError)) throw previous;
        const absent = await Deno.stat(this.path("previous")).then(() => false, () => true);
        if (absent) throw latest;
        throw new UserError(`${latest.message}; and ${previous.message}`);
      }
      this.#checkpointGood = false; // the next checkpoint replaces it; the previous one stays
      log(
        `${latest.message}; resuming from the previous checkpoint ${this.path("previous")} ` +
          `(${describe(this.#progress)}) instead`,
      );
    }
    this.#kept = describe(this.#progress);
    const epochs = this.#progress.epoch;
    let records: EpochRecord[] = [];
    try {
      records = (await readRun(this.dir)).records;
    } catch (e) {
      // A run killed in its first epoch, before its metrics.jsonl, has none.
      const missing = await Deno.stat(this.path("metrics")).then(() => false, () => true);
      if (!(missing && epochs === 0)) throw e;
    }
    if (records.length < epochs) {
      throw new UserError(
        `${this.path("metrics")}: ${records.length} epoch records, but the checkpoint is ` +
          `after epoch ${epochs}`,
      );
    }
    this.#records = records.slice(0, epochs);
    await this.#write("metrics", encodeEpochRecords(this.#records));
    return this.#progress;
  }

  /**
   * Ends an epoch: appends its record, keeps the weights as the best ones when its validation
   * accuracy is the best so far (or it is the first epoch), checkpoints model, optimizer and
   * progress, and draws the curves.
   *
   * @param record the epoch's figures
   * @param model the model after the epoch
   * @param opt its optimizer
   */
  async recordEpoch(record: EpochRecord, model: tf.LayersModel, opt: OptimizerState) {
    this.#records.push(record);
    await this.#write("metrics", encodeEpochRecords(this.#records));
    let { bestAccuracy, bestEpoch } = this.#progress;
    if (record.val_acc > bestAccuracy || bestEpoch === 0) {
      [bestAccuracy, bestEpoch] = [record.val_acc, record.epoch];
      const best = await saveWeights(model);
      this.verifyReads();
      await this.#write("best", best);
    }
    this.#progress = { epoch: record.epoch, bestAccuracy, bestEpoch };
    await this.#writeCheckpoint(model, opt);
    await this.#write("curves", await renderCurves(this.#records));
  }

  /**
   * Checkpoints a run stopped in the middle of an epoch, to continue from its next step.
   *
   * @param partial the steps done of the epoch, with their running sums
   * @param model the model
   * @param opt its optimizer
   */
  async checkpointStop(partial: PartialEpoch, model: tf.LayersModel, opt: OptimizerState) {
    this.#progress = { ...this.#progress, partial };
    await this.#writeCheckpoint(model, opt);
  }

  /** The checkpoint of {@link progress}, from the model and the optimizer as they are now. */
  async #writeCheckpoint(model: tf.LayersModel, opt: OptimizerState): Promise<void> {
    const bytes = await encodeCheckpoint(model, opt, this.#progress);
    this.verifyReads();
    await this.#write("checkpoint", bytes);
    this.#kept = describe(this.#progress);
    this.#checkpointGood = true;
  }

  /**
   * Every write of a run: atomic (a temporary file, then a rename). A new checkpoint turns the
   * last good one into `checkpoint.prev.safetensors` just before it is renamed into place. A
   * failed write is a {@link WriteError} that says what is intact and how to go on.
   */
  async #write(file: RunFile, bytes: Uint8Array): Promise<void> {
    const before = file === "checkpoint" && this.#checkpointGood
      ? () => Deno.rename(this.path("checkpoint"), this.path("previous"))
      : undefined;
    try {
      await writeFileAtomic(this.path(file), bytes, { before });
    } catch (e) {
      if (!(e instanceof WriteError)) throw e;
      const fix = e.noSpace
        ? "free space"
        : /permission|denied|read-only/i.test(e.reason)
        ? "fix the folder's permissions"
        : "fix the cause";
      const intact = this.#kept
        ? `${this.#kept} is intact; ${fix}, then deno task train --resume ${this.dir}`
        : `the run has no checkpoint yet; ${fix}, then remove ${this.dir} and start again`;
      throw new WriteError(e.path, e.reason, intact);
    }
  }
}

/** What a checkpoint of `progress` holds, in words: `the checkpoint of epoch 3`. */
function describe(progress: Progress): string {
  const { epoch, partial } = progress;
  if (partial) return `the checkpoint at step ${partial.step} of epoch ${epoch + 1}`;
  return epoch === 0 ? "the checkpoint of the initial weights" : `the checkpoint of epoch ${epoch}`;
}

/** Whether `dir` exists and is not empty. */
async function holdsFiles(dir: string): Promise<boolean> {
  try {
    for await (const _ of Deno.readDir(dir)) return true;
    return false;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    if (e instanceof Deno.errors.NotADirectory) {
      throw new UserError(`--out ${dir} is a file; give a folder`);
    }
    throw e;
  }
}

/** Where a command's model comes from: {@link resolveModelSource}. */
export interface ModelSource {
  /** The run's saved configuration, when a run folder was given. */
  saved?: SavedRun;
  /** The model name. */
  model: string;
  /** The weights file. */
  weights: string;
}

/**
 * The model a command works on: a run folder's (its saved configuration, its best weights), or
 * the one named by flags (`--model`, `--weights`), flags first.
 *
 * @param from the run folder, the model name and the weights file given
 * @returns the saved configuration (with a run folder), the model name and the weights file
 * @throws {UserError} when neither a run folder nor a model and weights are given
 * @example
 * ```ts
 * import { resolveModelSource } from "./folder.ts";
 * const m = await resolveModelSource({ model: "resnet20", weights: "w.safetensors" });
 * console.log(m.model, m.weights); // resnet20 w.safetensors
 * ```
 */
export async function resolveModelSource(
  from: { run?: string; model?: string; weights?: string },
): Promise<ModelSource> {
  const run = from.run ? await RunFolder.open(from.run) : undefined;
  const model = from.model ?? run?.config.model;
  const weights = from.weights ?? run?.path("best");
  if (!model || !weights) {
    throw new UserError("give --run <run folder>, or --model <name> and --weights <file>");
  }
  return { saved: run?.config, model, weights };
}

/**
 * Reads run folders and compares them in one Markdown table (`report/compare.ts`'s
 * `compareTable`), one row per run in the order given.
 *
 * @param dirs run folders written by `train.ts` (at least one)
 * @returns the table, ending with a newline
 * @throws {UserError} naming the run folder that cannot be read
 * @example
 * ```ts ignore
 * console.log(await compareRuns(["runs/resnet20", "runs/regnety400"]));
 * ```
 */
export async function compareRuns(dirs: string[]): Promise<string> {
  if (dirs.length === 0) throw new UserError("no run folder given to compare");
  const runs = [];
  for (const dir of dirs) {
    try {
      const run = await RunFolder.open(dir);
      runs.push({ dir, config: run.config, records: run.records });
    } catch (err) {
      if (err instanceof UserError) throw new UserError(`run folder ${dir}: ${err.message}`);
      throw err;
    }
  }
  return compareTable(runs);
}
