/**
 * The training loop: the reference code's `train_model` with validation after every epoch,
 * fixed-column logs, a run folder (`run/folder.ts`: config, metrics, checkpoint, best weights,
 * curves), exact resume, and a clean stop on an aborted signal (Ctrl-C) or a non-finite loss.
 * It runs on the backend the caller started (`initBackend`, as `train.ts` does).
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { BackendInfo } from "../backend/backend.ts";
import { batchCount, iterateBatches } from "../data/batches.ts";
import { type ImageDataset, takeFirst } from "../data/dataset.ts";
import { loadDataset } from "../data/load.ts";
import { countParams, createModel } from "../models/registry.ts";
import { loadWeights } from "../models/weights.ts";
import type { PartialEpoch } from "../run/checkpoint.ts";
import { RunFolder } from "../run/folder.ts";
import {
  epochLineHeader,
  type EpochRecord,
  formatEpochLine,
  type SavedRun,
} from "../run/records.ts";
import { UserError } from "../util/errors.ts";
import { throwIfDeviceFailed } from "../ops/extensions.ts";
import { learningRate, type TrainConfig } from "./config.ts";
import { evaluate } from "./evaluate.ts";
import { SGD } from "./optimizer.ts";
import { type BatchResult, trainBatch } from "./step.ts";
import { CapturedTrainStep } from "./captured.ts";
import { storedImageSize } from "./classify.ts";

/** Options of {@link train}. */
export interface TrainOptions {
  /** The run folder; `runs/<model>-<timestamp>` when absent. */
  out?: string;
  /** Where lines go; `console.log` when absent. */
  log?: (line: string) => void;
  /** Show a progress bar on stderr (only when stderr is a terminal). */
  progress?: boolean;
  /**
   * Aborting stops the run at the next step boundary with a checkpoint to `--resume` from
   * (mid-epoch when the epoch is not done) and returns.
   */
  signal?: AbortSignal;
  /**
   * Called after each training step is queued, with its 1-based epoch and step in the epoch (its
   * loss is read while the next step runs); `signal` aborted here stops the run after this step.
   */
  onStep?: (epoch: number, step: number) => void;
  /**
   * Run every step through tfjs, without capturing and replaying it on webgpu
   * (`training/captured.ts`; same results, more host work per step).
   */
  eager?: boolean;
  /** The backend started (`initBackend`'s answer), saved in `config.json`. */
  backend?: BackendInfo;
}

/** What {@link train} did. */
export interface TrainResult {
  /** The run folder. */
  dir: string;
  /** Epochs finished in total. */
  epochs: number;
  /** Best validation accuracy. */
  bestAccuracy: number;
  /** Whether the run stopped early (its `signal` aborted). */
  interrupted: boolean;
}

/**
 * Trains a model as configured into a new run folder, or resumes the run in `resumeDir`, on the
 * backend already started (`initBackend`).
 *
 * @param config the resolved configuration (when resuming, only its `epochs` counts, if given)
 * @param options run folder, logging, interruption
 * @param resumeDir a run folder to continue
 * @returns the run folder and what was done
 */
export async function train(
  config: TrainConfig,
  options: TrainOptions = {},
  resumeDir?: string,
): Promise<TrainResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const run = resumeDir
    ? await RunFolder.resume(resumeDir)
    : await RunFolder.create(options.out ?? RunFolder.defaultDir(config.model));
  if (resumeDir) config = savedConfig(run, config.epochs);
  const { trainSet, valSet } = await loadData(config, log);
  const model = await buildModel(config, trainSet.classNames.length, !resumeDir, log);
  const opt = new SGD({
    lr: config.lr,
    momentum: config.momentum,
    weightDecay: config.weightDecay,
  });
  const step = chooseStep(model, opt, options.eager === true, log);
  const result = (interrupted: boolean): TrainResult => ({
    dir: run.dir,
    epochs: run.progress.epoch,
    bestAccuracy: run.progress.bestAccuracy,
    interrupted,
  });
  try {
    if (resumeDir) {
      const { epoch, partial } = await run.restore(model, opt, log);
      const at = partial ? `, step ${partial.step} of epoch ${epoch + 1}` : "";
      log(`resuming ${run.dir} after epoch ${epoch} of ${config.epochs}${at}`);
    } else {
      await run.start(describeRun(config, model, trainSet, valSet, options.backend), model, opt);
      log(`config ${JSON.stringify(config)}`);
    }
    log(
      `${config.model}: ${countParams(model).toLocaleString("en-US")} parameters; ` +
        `${trainSet.size} training and ${valSet.size} validation images; run folder ${run.dir}`,
    );
    log(epochLineHeader());
    run.verifyReads = throwIfDeviceFailed;
    // A lost device also fails reads that tfjs makes inside promises of its own, which nothing
    // awaits: those rejections are this fault's echo, reported by the line below, not crashes.
    const onLost = (event: PromiseRejectionEvent) => {
      if (/device (is )?lost/i.test(String((event.reason as Error)?.message ?? event.reason))) {
        event.preventDefault();
      }
    };
    globalThis.addEventListener("unhandledrejection", onLost);
    try {
      await trainEpochs(run, step, model, opt, trainSet, valSet, config, options, log);
    } catch (e) {
      throw (await deviceFault(e, run)) ?? e;
    } finally {
      globalThis.removeEventListener("unhandledrejection", onLost);
    }
    if (run.progress.epoch < config.epochs) return result(true);
    const { bestAccuracy, bestEpoch } = run.progress;
    log(
      `done: best val acc ${(100 * bestAccuracy).toFixed(2)}% at epoch ${bestEpoch}; ` +
        `weights ${run.path("best")}`,
    );
    return result(false);
  } finally {
    step.dispose();
    opt.dispose();
    model.dispose();
  }
}

/**
 * The epochs of a run, from where its folder stands to `config.epochs`; returns early when the
 * signal aborts (with a checkpoint written).
 */
async function trainEpochs(
  run: RunFolder,
  step: TrainingStep,
  model: tf.LayersModel,
  opt: SGD,
  trainSet: ImageDataset,
  valSet: ImageDataset,
  config: TrainConfig,
  options: TrainOptions,
  log: (line: string) => void,
): Promise<void> {
  for (let epoch = run.progress.epoch; epoch < config.epochs; epoch++) {
    if (options.signal?.aborted) {
      log(`stopped after epoch ${epoch}: checkpoint kept; continue with --resume ${run.dir}`);
      return;
    }
    opt.lr = learningRate(config, epoch);
    const fit = await trainEpoch(step, trainSet, config, epoch, run.progress.partial, options);
    if (fit.stoppedAt) {
      await run.checkpointStop(fit.stoppedAt, model, opt);
      log(
        `stopped at epoch ${epoch + 1}, step ${fit.stoppedAt.step}: checkpoint written; ` +
          `continue with --resume ${run.dir}`,
      );
      return;
    }
    const val = await evaluate(model, valSet, { ...config, eager: options.eager });
    const record = epochRecord(epoch + 1, opt.lr, fit, val, trainSet.size);
    log(formatEpochLine(record, config.epochs));
    await run.recordEpoch(record, model, opt);
  }
}

/**
 * A failure of the GPU device (lost, or an error it reported) during training or evaluation, as
 * one line that says what is kept; `null` for any other error. The device's own report wins: a
 * lost device also makes the reads fail, with messages of their own.
 */
async function deviceFault(e: unknown, run: RunFolder): Promise<UserError | null> {
  if (e instanceof UserError) return null;
  await new Promise((resolve) => setTimeout(resolve, 20)); // the device's lost promise settles
  let reported: Error | null = null;
  try {
    throwIfDeviceFailed();
  } catch (d) {
    reported = d as Error;
  }
  const error = reported ?? (e instanceof Error && /^WebGPU /.test(e.message) ? e : null);
  if (!error) return null;
  return new UserError(
    `${error.message.replace(/\s*\n\s*/g, " ")}; ${run.kept ?? "no checkpoint"} ` +
      `(${run.path("checkpoint")}) is intact; continue on a new device with ` +
      `deno task train --resume ${run.dir}`,
  );
}

/**
 * The configuration of the run in `dir`, to resume it (`train.ts` reads it to start the backend
 * the run was made on): the saved one, with `epochs` raised when given.
 *
 * @param dir the run folder
 * @param epochs the epochs asked for now, if any
 * @returns the configuration
 * @throws {UserError} when the run's `config.json` is missing or malformed
 */
export async function resumedConfig(dir: string, epochs?: number): Promise<TrainConfig> {
  return savedConfig(await RunFolder.resume(dir), epochs);
}

/** The run's saved configuration, which wins when resuming; only `epochs` may be raised. */
function savedConfig(run: RunFolder, epochs: number | undefined): TrainConfig {
  const saved = run.config.train as TrainConfig;
  return { ...saved, epochs: epochs ?? saved.epochs };
}

/** What `config.json` holds of a new run. */
function describeRun(
  config: TrainConfig,
  model: tf.LayersModel,
  trainSet: ImageDataset,
  valSet: ImageDataset,
  backend: BackendInfo | undefined,
): SavedRun {
  return {
    model: config.model,
    params: countParams(model),
    dataset: config.dataset,
    epochs: config.epochs,
    train: config,
    classes: [...trainSet.classNames],
    backend: backend?.backend ?? tf.getBackend(),
    adapter: backend?.adapter,
    train_images: trainSet.size,
    val_images: valSet.size,
  };
}

/** One epoch's record from its training and validation figures. */
function epochRecord(
  epoch: number,
  lr: number,
  fit: EpochFit,
  val: { loss: number; accuracy: number },
  images: number,
): EpochRecord {
  return {
    epoch,
    lr,
    train_loss: fit.loss,
    train_acc: fit.accuracy,
    val_loss: val.loss,
    val_acc: val.accuracy,
    epoch_time_s: fit.seconds,
    img_per_s: images / fit.seconds,
  };
}

/** The training step {@link train} runs on each batch. */
interface TrainingStep {
  run(x: tf.Tensor4D, y: tf.Tensor1D): BatchResult;
  dispose(): void;
}

/**
 * The training step: captured once and replayed (`captured.ts`), which logs once each time it
 * runs through tfjs and why; or, with `eager`, tfjs's `trainBatch` every time.
 */
function chooseStep(
  model: tf.LayersModel,
  opt: SGD,
  eager: boolean,
  log: (l: string) => void,
): TrainingStep {
  if (eager) return { run: (x, y) => trainBatch(model, opt, x, y), dispose() {} };
  const graph = new CapturedTrainStep(model, opt);
  let reported: string | null = null;
  return {
    run(x, y) {
      const result = graph.run(x, y);
      const failure = graph.stats.lastFailure;
      if (failure && failure !== reported) {
        log(`note: training steps run through tfjs, not replayed (${failure})`);
        reported = failure;
      }
      return result;
    },
    dispose: () => graph.dispose(),
  };
}

async function loadData(config: TrainConfig, log: (l: string) => void) {
  const common = {
    dataset: config.dataset,
    dir: config.data,
    inputSize: storedImageSize(config.dataset, config.inputSize),
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
 * The model to train, with `config.initWeights` loaded into a new run (`fresh`) for fine-tuning.
 */
async function buildModel(
  config: TrainConfig,
  numClasses: number,
  fresh: boolean,
  log: (l: string) => void,
): Promise<tf.LayersModel> {
  const { inputSize, seed } = config;
  const model = createModel(config.model, { numClasses, inputSize, seed });
  if (!fresh || !config.initWeights) return model;
  try {
    await initWeights(model, config.initWeights, log);
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
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

interface EpochFit {
  loss: number;
  accuracy: number;
  seconds: number;
  /** Set when the epoch stopped early (its signal aborted): where, with the sums so far. */
  stoppedAt?: PartialEpoch;
}

async function trainEpoch(
  trainingStep: TrainingStep,
  data: ImageDataset,
  config: TrainConfig,
  epoch: number,
  resumeFrom: PartialEpoch | undefined,
  options: TrainOptions,
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
    const result = trainingStep.run(batch.x, batch.y);
    const values = Promise.all([result.loss.data(), result.correct.data()]).finally(() =>
      tf.dispose([result.loss, result.correct])
    );
    tf.dispose([batch.x, batch.y]);
    launched++;
    options.onStep?.(epoch + 1, launched);
    await settle(); // the previous step's values, while this one runs
    pending = { values, size: batch.size };
    if (options.signal?.aborted && launched < steps) {
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
