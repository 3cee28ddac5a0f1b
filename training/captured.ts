/**
 * A training step captured once and replayed (the backend's `capture` extension of
 * `ops/extensions.ts`; on webgpu `webgpu/runtime/capture.ts`), as `torch.cuda.graphs`
 * does for PyTorch: the same kernels over the same buffers, without tfjs's per-op host work.
 *
 * {@link CapturedTrainStep.run} has the contract of {@link trainBatch} and gives bit-identical
 * results. It runs eagerly until the optimizer has its momentum buffers (first step), captures
 * the next step (which runs as usual), and replays from then on while nothing that the capture
 * depends on changes: the batch's shapes, the optimizer's hyperparameters (a new learning rate
 * recaptures), and the buffers of the model's state (loading weights recaptures). It keeps a
 * recording per batch shape, two at most (an epoch's last, smaller batch has its own). Where the
 * backend cannot replay (not webgpu, the toolkit's kernels off, a profiler on) it stays eager.
 * {@link CapturedEvalStep} does the same for an evaluation batch.
 *
 * @module
 */
import { tf } from "../deps.ts";
import {
  type Capture,
  type CaptureExtension,
  provided,
  throwIfDeviceFailed,
} from "../ops/extensions.ts";
import { inPlaceSgdAvailable } from "../ops/sgd.ts";
import { inPlaceRunningStatsAvailable } from "../ops/batchnorm.ts";
import { stateEntries } from "../models/weights.ts";
import type { SGD } from "./optimizer.ts";
import { type BatchResult, evalBatch, namedParameters, trainBatch } from "./step.ts";

/** Counters of a {@link CapturedTrainStep} or {@link CapturedEvalStep}. */
export interface CaptureStats {
  /** Steps run eagerly (through tfjs). */
  eager: number;
  /** Steps captured (they also run). */
  captures: number;
  /** Steps replayed. */
  replays: number;
  /** Why the last capture failed, or `null`. */
  lastFailure: string | null;
}

/** Recordings a captured step keeps (one per input shape: a loop's last batch is smaller). */
const MAX_RECORDINGS = 2;

interface Graph {
  /** The hyperparameters and state buffers it was recorded with. */
  rest: string;
  recording: Capture;
  /** The graph's copies of the inputs, which each replay fills. */
  inputs: tf.Tensor[];
  /** The captured step's outputs, which each replay overwrites. */
  outputs: tf.Tensor[];
}

/**
 * What the captured steps share: capture on a new key, replay on the same key, eager where the
 * backend cannot replay. A step is a function of input tensors to output tensors that reads and
 * (in place) writes some state tensors.
 */
abstract class CapturedStep {
  /** Eager steps, captures, replays. */
  readonly stats: CaptureStats = { eager: 0, captures: 0, replays: 0, lastFailure: null };
  /** Recordings by key (input shapes, then hyperparameters and state buffers), oldest first. */
  #graphs = new Map<string, Graph>();
  /** The recording replayed or made last. */
  #last: Graph | null = null;
  /** Keys whose capture failed (not retried while the state stays the same). */
  #failed: { rest: string; keys: Set<string> } | null = null;

  /** Dispatches per replayed step of the recording used last (0 before the first capture). */
  get dispatchesPerStep(): number {
    return this.#last?.recording.dispatches ?? 0;
  }

  /** Frees the recordings and their buffers. Idempotent. */
  dispose(): void {
    this.#dropAll();
    this.#last = null;
  }

  /** Whether the state allows a capture now (beyond the backend's conditions). */
  protected abstract ready(): boolean;
  /** The float tensors the step reads or updates in place (the commands may bind them). */
  protected abstract state(): tf.Tensor[];
  /** What else a recording depends on (hyperparameters baked into its uniforms). */
  protected abstract keyParts(): unknown[];
  /**
   * The step through tfjs. It also runs inside a capture, where all of its work must be on the
   * device (the BatchNorm batch counters included: `BatchNorm2d.commitAll`).
   */
  protected abstract eager(inputs: tf.Tensor[]): tf.Tensor[];

  /** Runs the step: replays, captures or runs eagerly. */
  protected step(inputs: tf.Tensor[]): tf.Tensor[] {
    // An error of an earlier step's GPU work (a replay's included), reported since its read.
    throwIfDeviceFailed();
    const capturer = this.#capturer();
    const state = capturer ? this.state() : null;
    if (capturer === null || state === null) {
      this.#dropAll();
      this.stats.eager++;
      return this.eager(inputs);
    }
    const shapes = JSON.stringify(inputs.map((t) => [t.shape, t.dtype]));
    const rest = JSON.stringify([this.keyParts(), state.map((t) => capturer.id(t.dataId))]);
    // Recordings made for other hyperparameters or other state buffers can never replay again.
    for (const [key, g] of this.#graphs) if (g.rest !== rest) this.#drop(key);
    if (this.#failed !== null && this.#failed.rest !== rest) this.#failed = null;
    const key = `${shapes}|${rest}`;
    const g = this.#graphs.get(key);
    if (g) {
      this.#graphs.delete(key); // most recently used last
      this.#graphs.set(key, g);
      return this.#replay(capturer, g, inputs, state);
    }
    if (this.#failed?.keys.has(key)) {
      this.stats.eager++;
      return this.eager(inputs);
    }
    return this.#capture(capturer, inputs, key, rest, state);
  }

  #drop(key: string): void {
    const g = this.#graphs.get(key);
    if (!g) return;
    this.#graphs.delete(key);
    if (this.#last === g) this.#last = null;
    g.recording.dispose();
    tf.dispose([...g.inputs, ...g.outputs]);
  }

  #dropAll(): void {
    for (const key of [...this.#graphs.keys()]) this.#drop(key);
  }

  /** The backend's capturer, when the step can be captured now. */
  #capturer(): CaptureExtension | null {
    const capturer = provided("capture");
    if (capturer === null || !capturer.ready()) return null;
    if (!inPlaceSgdAvailable() || !inPlaceRunningStatsAvailable()) return null;
    return this.ready() ? capturer : null;
  }

  #capture(
    capturer: CaptureExtension,
    given: tf.Tensor[],
    key: string,
    rest: string,
    state: tf.Tensor[],
  ): tf.Tensor[] {
    // The graph's own copies of the inputs: each replay copies the new batch into them.
    const inputs = given.map((t) => capturer.privateCopy(t));
    const tensorsBefore = tf.memory().numTensors;
    const { result, recording, reason } = capturer.capture(
      () => this.eager(inputs),
      [...state, ...inputs],
    );
    const leaked = tf.memory().numTensors - tensorsBefore - result.length;
    // The step's outputs live in the recording's buffers, which each replay overwrites: the
    // graph keeps them, the caller gets copies.
    const out = result.map((t) => capturer.privateCopy(t));
    if (recording && leaked === 0) {
      // The least recently used recording makes room (a loop's last, smaller batch keeps its own).
      if (this.#graphs.size >= MAX_RECORDINGS) this.#drop(this.#graphs.keys().next().value!);
      this.#graphs.set(key, { rest, recording, inputs, outputs: result });
      this.#last = this.#graphs.get(key)!;
      this.stats.captures++;
      this.stats.lastFailure = null;
    } else {
      recording?.dispose();
      tf.dispose([...inputs, ...result]);
      this.#failed ??= { rest, keys: new Set() };
      this.#failed.keys.add(key);
      this.stats.eager++;
      this.stats.lastFailure = reason ?? `${leaked} tensors outlived the captured step`;
    }
    return out;
  }

  #replay(
    capturer: CaptureExtension,
    g: Graph,
    inputs: tf.Tensor[],
    state: tf.Tensor[],
  ): tf.Tensor[] {
    this.#last = g;
    inputs.forEach((t, i) => capturer.copy(t, g.inputs[i]));
    g.recording.replay();
    // The replay may write state in place: a CPU copy from an earlier read would be stale.
    for (const t of state) capturer.forgetCpuCopy(t);
    this.stats.replays++;
    return g.outputs.map((t) => capturer.privateCopy(t));
  }
}

/**
 * A model's training step, captured and replayed on webgpu (see the module doc).
 *
 * @example
 * ```ts ignore
 * const step = new CapturedTrainStep(model, opt);
 * for (const { x, y } of batches) {
 *   const { loss, correct } = step.run(x, y);
 *   console.log((await loss.data())[0]);
 *   tf.dispose([loss, correct]);
 * }
 * step.dispose();
 * ```
 */
export class CapturedTrainStep extends CapturedStep {
  #model: tf.LayersModel;
  #opt: SGD;

  /**
   * @param model a model of the zoo
   * @param opt its optimizer
   */
  constructor(model: tf.LayersModel, opt: SGD) {
    super();
    this.#model = model;
    this.#opt = opt;
  }

  /**
   * One training step, as {@link trainBatch} (same results, bit for bit).
   *
   * @param images `[N, H, W, 3]` normalized images
   * @param labels `[N]` int32 labels
   * @returns the loss and the correct count (the caller disposes them)
   */
  run(images: tf.Tensor4D, labels: tf.Tensor1D): BatchResult {
    const [loss, correct] = this.step([images, labels]);
    return { loss: loss as tf.Scalar, correct: correct as tf.Scalar };
  }

  protected ready(): boolean {
    // The first step makes the momentum buffers: it runs eagerly.
    if (this.#opt.momentum === 0) return true;
    const buffers = this.#opt.buffers();
    return namedParameters(this.#model).every((p) => buffers.has(p.name));
  }

  protected state(): tf.Tensor[] {
    return [...modelState(this.#model), ...this.#opt.buffers().values()];
  }

  protected keyParts(): unknown[] {
    const o = this.#opt;
    return [o.lr, o.momentum, o.weightDecay, o.dampening, o.nesterov];
  }

  protected eager([x, y]: tf.Tensor[]): tf.Tensor[] {
    const r = trainBatch(this.#model, this.#opt, x as tf.Tensor4D, y as tf.Tensor1D);
    return [r.loss, r.correct];
  }
}

/**
 * A model's evaluation batch ({@link evalBatch}: logits, summed loss, correct count in
 * inference mode), captured and replayed on webgpu like {@link CapturedTrainStep}.
 */
export class CapturedEvalStep extends CapturedStep {
  #model: tf.LayersModel;

  /** @param model a model of the zoo */
  constructor(model: tf.LayersModel) {
    super();
    this.#model = model;
  }

  /**
   * One batch, as {@link evalBatch} (same results, bit for bit).
   *
   * @param images `[N, H, W, 3]` normalized images
   * @param labels `[N]` int32 labels
   * @returns the logits, the summed loss and the correct count (the caller disposes them)
   */
  run(
    images: tf.Tensor4D,
    labels: tf.Tensor1D,
  ): { logits: tf.Tensor2D; lossSum: tf.Scalar; correct: tf.Scalar } {
    const [logits, lossSum, correct] = this.step([images, labels]);
    return {
      logits: logits as tf.Tensor2D,
      lossSum: lossSum as tf.Scalar,
      correct: correct as tf.Scalar,
    };
  }

  protected ready(): boolean {
    return true;
  }

  protected state(): tf.Tensor[] {
    return modelState(this.#model);
  }

  protected keyParts(): unknown[] {
    return [];
  }

  protected eager([x, y]: tf.Tensor[]): tf.Tensor[] {
    const r = evalBatch(this.#model, x as tf.Tensor4D, y as tf.Tensor1D);
    return [r.logits, r.lossSum, r.correct];
  }
}

const stateCache = new WeakMap<tf.LayersModel, tf.Tensor[]>();

/**
 * A model's float state: parameters and BatchNorm running statistics (the variables, which keep
 * their identity when assigned; their data is read at each use).
 */
function modelState(model: tf.LayersModel): tf.Tensor[] {
  let state = stateCache.get(model);
  if (!state) {
    // `num_batches_tracked` too: a float32 scalar in tfjs, counted in place on the GPU.
    state = stateEntries(model).map((e) => e.variable.read() as tf.Tensor).filter((t) =>
      t.dtype === "float32"
    );
    stateCache.set(model, state);
  }
  return state;
}
