/**
 * The training loop: the reference code's `train_model` with validation after every epoch, fixed-column
 * logs, a run folder (config, metrics, checkpoint, best weights, curves), exact resume, and a
 * clean stop on Ctrl-C or on a non-finite loss.
 *
 * @module
 */
import { join } from "node:path";
import { tf } from "../deps.ts";
import { type BackendInfo, initBackend } from "../backend/backend.ts";
import { batchCount, iterateBatches } from "../data/batches.ts";
import { type ImageDataset, takeFirst } from "../data/dataset.ts";
import { loadDataset } from "../data/load.ts";
import { countParams, createModel } from "../models/registry.ts";
import { loadWeights, saveWeights } from "../models/weights.ts";
import { renderCurves } from "../report/curves.ts";
import {
  appendEpochRecord,
  epochLineHeader,
  type EpochRecord,
  formatEpochLine,
  METRICS_FILE,
  readRun,
  RUN_FILES,
  type SavedRun,
  writeEpochRecords,
  writeRunConfig,
} from "../run/records.ts";
import { requireWrite, UserError } from "../util/errors.ts";
import { learningRate, type TrainConfig } from "./config.ts";
import {
  loadCheckpoint,
  type PartialEpoch,
  type Progress,
  saveCheckpoint,
} from "../run/checkpoint.ts";
import { writeFileAtomic } from "../util/files.ts";
import { throwIfDeviceFailed } from "../ops/extensions.ts";
import { evaluate } from "./evaluate.ts";
import { SGD } from "./sgd.ts";
import { type BatchResult, trainBatch } from "./step.ts";
import { GraphedTrainStep } from "./graphed.ts";

/** Options of {@link train}. */
export interface TrainOptions {
  /** The run folder; `runs/<model>-<timestamp>` when absent. */
  out?: string;
  /** Where lines go; `console.log` when absent. */
  log?: (line: string) => void;
  /** Show a progress bar on stderr (only when stderr is a terminal). */
  progress?: boolean;
  /** Aborting finishes the current step, keeps the last checkpoint and returns. */
  signal?: AbortSignal;
  /** Stop after this many epochs of this invocation (tests use it to simulate a kill). */
  stopAfterEpochs?: number;
  /** Stop after this many training steps of this invocation, as Ctrl-C would (tests). */
  stopAfterSteps?: number;
  /**
   * Run every step through tfjs, without capturing and replaying it on webgpu
   * (`training/graphed.ts`; same results, more host work per step).
   */
  eager?: boolean;
}

/** What {@link train} did. */
export interface TrainResult {
  /** The run folder. */
  dir: string;
  /** Epochs finished in total. */
  epochs: number;
  /** Best validation accuracy. */
  bestAccuracy: number;
  /** Whether the run stopped early (Ctrl-C or stopAfterEpochs). */
  interrupted: boolean;
}

async function loadData(config: TrainConfig, log: (l: string) => void) {
  const common = {
    dataset: config.dataset,
    dir: config.data,
    inputSize: config.dataset === "folder" ? config.inputSize : 32,
    download: config.data === undefined,
    valSplit: config.valSplit,
    seed: config.seed,
    skipBadImages: config.skipBadImages,
    log,
  };
  let trainSet: ImageDataset = await loadDataset({ ...common, split: "train" });
  let valSet: ImageDataset = await loadDataset({ ...common, split: "test" });
  if (config.limit !== undefined) {
    trainSet = takeFirst(trainSet, Math.min(config.limit, trainSet.size));
    valSet = takeFirst(valSet, Math.min(config.limit, valSet.size));
  }
  return { trainSet, valSet };
}

/**
 * Fine-tuning's start: loads the tensors of `path` (safetensors or `.pth`) that fit the model and
 * logs the ones that were not loaded (a head of another size, layers the file lacks).
 */
async function initWeights(model: tf.LayersModel, path: string, log: (l: string) => void) {
  const report = await loadWeights(model, path, { strict: false });
  for (const note of report.notes) log(`--init-weights ${path}: ${note}`);
  const total = report.loaded.length + report.notLoaded.length;
  log(`--init-weights ${path}: loaded ${report.loaded.length} of the model's ${total} tensors`);
  if (report.notLoaded.length) {
    log(`  not loaded (kept from initialization): ${report.notLoaded.join(", ")}`);
  }
  if (report.unused.length) log(`  in the file but not in the model: ${report.unused.join(", ")}`);
}

/**
 * Trains a model as configured, or resumes the run in `resumeDir`.
 *
 * @param config the resolved configuration (ignored when resuming, but for `epochs`)
 * @param options run folder, logging, interruption
 * @param resumeDir a run folder to continue
 * @returns the run folder and what was done
 */
export async function train(
  config: TrainConfig,
  options: TrainOptions = {},
  resumeDir?: string,
): Promise<TrainResult> {
  // When resuming, the saved configuration wins; only `epochs` may be raised.
  const log = options.log ?? ((line: string) => console.log(line));
  let dir: string;
  if (resumeDir) {
    const saved = (await readRun(resumeDir)).config as SavedRun;
    config = { ...saved.train, epochs: config.epochs ?? saved.train.epochs };
    dir = resumeDir;
  } else {
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace(
      "T",
      "-",
    );
    dir = options.out ?? join("runs", `${config.model}-${stamp}`);
    // Another run's folder is never written over (its metrics would mix with this run's).
    if (await holdsFiles(dir)) {
      throw new UserError(
        `--out ${dir} already holds files (a run folder?): continue that run with ` +
          `--resume ${dir}, or give a fresh --out`,
      );
    }
  }
  // Checked before the data loads, so that a folder the run may not write fails at once.
  await requireWrite(dir, resumeDir ? "--resume" : "--out", "train.ts");
  // Data first: a wrong --data fails at once, before the GPU starts (host arrays only).
  const { trainSet, valSet } = await loadData(config, log);
  const backend: BackendInfo = await initBackend({ backend: config.backend, log });
  const model = createModel(config.model, {
    numClasses: trainSet.classNames.length,
    inputSize: config.inputSize,
    seed: config.seed,
  });
  if (config.initWeights && !resumeDir) {
    try {
      await initWeights(model, config.initWeights, log);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  const opt = new SGD({
    lr: config.lr,
    momentum: config.momentum,
    weightDecay: config.weightDecay,
  });
  let progress: Progress = { epoch: 0, bestAccuracy: 0, bestEpoch: 0 };
  const graph = options.eager ? null : new GraphedTrainStep(model, opt);
  let reportedFailure: string | null = null;
  const runStep = (x: tf.Tensor4D, y: tf.Tensor1D): BatchResult =>
    graph ? graph.run(x, y) : trainBatch(model, opt, x, y);
  try {
    if (resumeDir) {
      progress = await loadCheckpoint(join(dir, RUN_FILES.checkpoint), model, opt);
      const at = progress.partial
        ? `, step ${progress.partial.step} of epoch ${progress.epoch + 1}`
        : "";
      log(`resuming ${dir} after epoch ${progress.epoch} of ${config.epochs}${at}`);
    } else {
      await Deno.mkdir(dir, { recursive: true });
      const saved: SavedRun = {
        model: config.model,
        params: countParams(model),
        dataset: config.dataset,
        epochs: config.epochs,
        batch_size: config.batchSize,
        train: config,
        classes: [...trainSet.classNames],
        backend: backend.backend,
        adapter: backend.adapter,
        train_images: trainSet.size,
        val_images: valSet.size,
      };
      await writeRunConfig(dir, saved);
      await writeEpochRecords(dir, []);
      // The initial weights, so that a run stopped (or killed) before its first checkpoint
      // resumes from the start of epoch 1 with the same weights.
      await saveCheckpoint(join(dir, RUN_FILES.checkpoint), model, opt, progress);
      log(`config ${JSON.stringify(config)}`);
    }
    log(
      `${config.model}: ${countParams(model).toLocaleString("en-US")} parameters; ` +
        `${trainSet.size} training and ${valSet.size} validation images; run folder ${dir}`,
    );
    log(epochLineHeader());
    // Records of the epochs the checkpoint holds: a run killed after writing an epoch's record
    // but before its checkpoint repeats that epoch, so its record is written again.
    const records: EpochRecord[] = resumeDir ? await resumedRecords(dir, progress.epoch) : [];
    let interrupted = false, epochsRun = 0;
    const budget = { steps: options.stopAfterSteps ?? Infinity };
    for (let epoch = progress.epoch; epoch < config.epochs; epoch++) {
      const stopNow = options.signal?.aborted || budget.steps <= 0;
      if (
        stopNow || (options.stopAfterEpochs !== undefined && epochsRun >= options.stopAfterEpochs)
      ) {
        if (stopNow) {
          log(`stopped after epoch ${epoch}: checkpoint kept; continue with --resume ${dir}`);
        }
        interrupted = true;
        break;
      }
      opt.lr = learningRate(config, epoch);
      const fit = await trainEpoch(runStep, trainSet, config, epoch, progress.partial, {
        ...options,
        budget,
      });
      const failure = graph?.stats.lastFailure;
      if (failure && failure !== reportedFailure) {
        log(`note: training steps run through tfjs, not replayed (${failure})`);
        reportedFailure = failure;
      }
      if (fit.stoppedAt) {
        // Stopped mid-epoch: checkpoint what is done so far, to continue from the next step.
        interrupted = true;
        progress = { ...progress, partial: fit.stoppedAt };
        await saveCheckpoint(join(dir, RUN_FILES.checkpoint), model, opt, progress);
        log(
          `stopped at epoch ${epoch + 1}, step ${fit.stoppedAt.step}: checkpoint written; ` +
            `continue with --resume ${dir}`,
        );
        break;
      }
      const val = await evaluate(model, valSet, {
        batchSize: config.batchSize,
        inputSize: config.inputSize,
        eager: options.eager,
      });
      const record: EpochRecord = {
        epoch: epoch + 1,
        lr: opt.lr,
        train_loss: fit.loss,
        train_acc: fit.accuracy,
        val_loss: val.loss,
        val_acc: val.accuracy,
        epoch_time_s: fit.seconds,
        img_per_s: trainSet.size / fit.seconds,
      };
      records.push(record);
      await appendEpochRecord(dir, record);
      log(formatEpochLine(record, config.epochs));
      if (val.accuracy > progress.bestAccuracy || progress.bestEpoch === 0) {
        progress = { ...progress, bestAccuracy: val.accuracy, bestEpoch: epoch + 1 };
        await writeFileAtomic(join(dir, RUN_FILES.best), await saveWeights(model));
      }
      progress = {
        epoch: epoch + 1,
        bestAccuracy: progress.bestAccuracy,
        bestEpoch: progress.bestEpoch,
      };
      await saveCheckpoint(join(dir, RUN_FILES.checkpoint), model, opt, progress);
      await writeFileAtomic(join(dir, RUN_FILES.curves), await renderCurves(records));
      epochsRun++;
    }
    if (!interrupted) {
      log(
        `done: best val acc ${(100 * progress.bestAccuracy).toFixed(2)}% at epoch ` +
          `${progress.bestEpoch}; weights ${join(dir, RUN_FILES.best)}`,
      );
    }
    return { dir, epochs: progress.epoch, bestAccuracy: progress.bestAccuracy, interrupted };
  } finally {
    graph?.dispose();
    opt.dispose();
    model.dispose();
  }
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

/**
 * The records of the first `epochs` epochs of a run being resumed (a run folder stopped in its
 * first epoch may have no `metrics.jsonl`); `metrics.jsonl` is rewritten to hold just those.
 */
async function resumedRecords(dir: string, epochs: number): Promise<EpochRecord[]> {
  let records: EpochRecord[] = [];
  try {
    records = (await readRun(dir)).records;
  } catch (e) {
    const missing = await Deno.stat(join(dir, METRICS_FILE)).then(() => false, () => true);
    if (!(missing && epochs === 0)) throw e;
  }
  if (records.length < epochs) {
    throw new UserError(
      `${join(dir, METRICS_FILE)}: ${records.length} epoch records, but the checkpoint is ` +
        `after epoch ${epochs}`,
    );
  }
  records = records.slice(0, epochs);
  await writeEpochRecords(dir, records);
  return records;
}

interface EpochFit {
  loss: number;
  accuracy: number;
  seconds: number;
  /** Set when the epoch stopped early (Ctrl-C or a step budget): where, with the sums so far. */
  stoppedAt?: PartialEpoch;
}

async function trainEpoch(
  runStep: (x: tf.Tensor4D, y: tf.Tensor1D) => BatchResult,
  data: ImageDataset,
  config: TrainConfig,
  epoch: number,
  resumeFrom: PartialEpoch | undefined,
  options: TrainOptions & { budget: { steps: number } },
): Promise<EpochFit> {
  const steps = batchCount(data, { batchSize: config.batchSize });
  const bar = options.progress && Deno.stderr.isTerminal()
    ? new ProgressBar(steps, epoch + 1, config.batchSize)
    : null;
  const start = performance.now();
  const done: PartialEpoch = resumeFrom ?? { step: 0, lossSum: 0, correct: 0, seen: 0, seconds: 0 };
  let { lossSum, correct, seen, step } = done;
  const elapsed = () => done.seconds + (performance.now() - start) / 1000;
  const batches = iterateBatches(data, {
    batchSize: config.batchSize,
    shuffle: true,
    seed: config.seed,
    epoch,
    augment: config.augment,
    inputSize: config.inputSize,
    startBatch: step,
  });
  // Each step's loss and correct count are read back while the next step runs: the read is
  // issued right after the step is recorded, and awaited after the next one is, so the GPU does
  // not wait for the host between steps. The steps and the sums are the same as reading at once.
  let pending: { values: Promise<ArrayLike<number>[]>; size: number } | null = null;
  const settle = async () => {
    if (!pending) return;
    const [loss, right] = await pending.values;
    const size = pending.size;
    pending = null;
    try {
      throwIfDeviceFailed(); // the step's GPU work failed: its numbers are wrong
    } catch (e) {
      await batches.return(undefined);
      throw e;
    }
    if (!Number.isFinite(loss[0])) {
      await batches.return(undefined);
      throw new UserError(
        `loss became ${loss[0]} at epoch ${epoch + 1}, step ${step + 1}: training diverged ` +
          `(try a lower --lr); the last good checkpoint is kept`,
      );
    }
    lossSum += loss[0] * size;
    correct += right[0];
    seen += size;
    step++;
    bar?.update(step, lossSum / seen, seen / elapsed());
  };
  let launched = step;
  for await (const batch of batches) {
    const result = runStep(batch.x, batch.y);
    const values = Promise.all([result.loss.data(), result.correct.data()]).finally(() =>
      tf.dispose([result.loss, result.correct])
    );
    tf.dispose([batch.x, batch.y]);
    launched++;
    options.budget.steps--;
    await settle(); // the previous step's values, while this one runs
    pending = { values, size: batch.size };
    if ((options.signal?.aborted || options.budget.steps <= 0) && launched < steps) {
      await settle();
      await batches.return(undefined);
      bar?.clear();
      return {
        loss: NaN,
        accuracy: NaN,
        seconds: 0,
        stoppedAt: { step, lossSum, correct, seen, seconds: elapsed() },
      };
    }
  }
  await settle();
  bar?.clear();
  return { loss: lossSum / seen, accuracy: correct / seen, seconds: elapsed() };
}

/** A one-line progress bar on stderr: step, loss, images/s and ETA. */
class ProgressBar {
  #encoder = new TextEncoder();
  constructor(
    private readonly total: number,
    private readonly epoch: number,
    private readonly batchSize: number,
  ) {}

  update(step: number, loss: number, rate: number): void {
    const width = 30, filled = Math.round((width * step) / this.total);
    const eta = rate > 0 ? ((this.total - step) * this.batchSize) / rate : 0;
    const line = `epoch ${this.epoch} [${"#".repeat(filled)}${".".repeat(width - filled)}] ` +
      `${step}/${this.total} loss ${loss.toFixed(4)} ${rate.toFixed(1)} img/s`;
    Deno.stderr.writeSync(this.#encoder.encode(`\r${line} ETA ${Math.round(eta)}s\x1b[K`));
  }

  clear(): void {
    Deno.stderr.writeSync(this.#encoder.encode("\r\x1b[K"));
  }
}
