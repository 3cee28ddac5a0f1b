/**
 * Checkpoints: the model's state dict, the optimizer's momentum buffers (both in PyTorch's
 * layout) and the progress (epochs done, best accuracy) in one safetensors file, which the run
 * folder (`folder.ts`) writes to a temporary name and renames, so that a crash never leaves a
 * half-written checkpoint.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { parseSafetensors, type SafeTensor, serializeSafetensors } from "../io/safetensors.ts";
import { checksumMetadata, checksumMismatch } from "../io/checksums.ts";
import {
  assignStateDict,
  fromTorchLayout,
  stateDict,
  stateEntries,
  toTorchLayout,
} from "../models/weights.ts";
import { UserError } from "../util/errors.ts";

/**
 * What a checkpoint saves of an optimizer: its learning rate and its momentum buffers by
 * parameter name (`training/optimizer.ts`'s `SGD` is one).
 */
export interface OptimizerState {
  /** The current learning rate. */
  lr: number;
  /** The momentum buffers, keyed by the parameter's PyTorch name. */
  buffers(): ReadonlyMap<string, tf.Tensor>;
  /** Sets the momentum buffer of a parameter. */
  setBuffer(name: string, value: tf.Tensor): void;
}

/** The steps done of an epoch that was stopped in the middle, with its running sums. */
export interface PartialEpoch {
  /** Batches done in the epoch. */
  step: number;
  /** Sum of batch loss times batch size. */
  lossSum: number;
  /** Correct predictions so far. */
  correct: number;
  /** Images seen so far. */
  seen: number;
  /** Training seconds so far. */
  seconds: number;
}

/** Progress saved with a checkpoint. */
export interface Progress {
  /** Number of finished epochs. */
  epoch: number;
  /** Steps done of epoch `epoch + 1`, when the run stopped in the middle of it. */
  partial?: PartialEpoch;
  /** Best validation accuracy so far. */
  bestAccuracy: number;
  /** 1-based epoch of the best accuracy (0 when none). */
  bestEpoch: number;
}

const MODEL = "model.";
const OPTIMIZER = "optimizer.";
const MOMENTUM = ".momentum_buffer";

/**
 * A checkpoint's bytes: model, optimizer and progress in one safetensors file, with the CRC-32
 * of each tensor (`io/checksums.ts`), which {@link loadCheckpoint} checks (the run folder
 * writes it, atomically).
 *
 * @param model the model
 * @param opt the optimizer
 * @param progress epochs done and best accuracy
 * @returns the safetensors file
 */
export async function encodeCheckpoint(
  model: tf.LayersModel,
  opt: OptimizerState,
  progress: Progress,
): Promise<Uint8Array> {
  const tensors = new Map<string, SafeTensor>();
  for (const [name, t] of await stateDict(model)) tensors.set(MODEL + name, t);
  const entries = new Map(stateEntries(model).map((e) => [e.name, e]));
  for (const [name, buffer] of opt.buffers()) {
    const entry = entries.get(name)!;
    const t = tf.tidy(() => toTorchLayout(entry, buffer));
    const data = new Float32Array(await t.data() as Float32Array);
    t.dispose();
    tensors.set(OPTIMIZER + name + MOMENTUM, { dtype: "F32", shape: t.shape, data });
  }
  const metadata = {
    format: "regnet-checkpoint-v1",
    progress: JSON.stringify(progress),
    lr: String(opt.lr),
    ...checksumMetadata(tensors),
  };
  return serializeSafetensors(tensors, metadata);
}

/**
 * Restores model and optimizer from a checkpoint, after checking it whole: a truncated file, a
 * malformed header or a tensor whose bytes fail their checksum is a {@link UserError} naming the
 * file (and the tensor), and the model is left as it was.
 *
 * @param path the checkpoint file
 * @param model the model (same architecture)
 * @param opt the optimizer
 * @returns the saved progress
 */
export async function loadCheckpoint(
  path: string,
  model: tf.LayersModel,
  opt: OptimizerState,
): Promise<Progress> {
  let parsed;
  try {
    const bytes = await Deno.readFile(path);
    parsed = parseSafetensors(bytes, path);
    const mismatch = checksumMismatch(bytes);
    if (mismatch) throw new UserError(`${path}: ${mismatch}`);
  } catch (e) {
    throw new UserError(
      e instanceof Deno.errors.NotFound
        ? `${path}: no checkpoint to resume from`
        : (e as Error).message,
    );
  }
  if (parsed.metadata.format !== "regnet-checkpoint-v1") {
    throw new UserError(
      `${path}: not a checkpoint of this toolkit (no regnet-checkpoint-v1 metadata)`,
    );
  }
  let progress: Progress;
  try {
    progress = JSON.parse(parsed.metadata.progress) as Progress;
    if (!Number.isInteger(progress.epoch) || progress.epoch < 0) throw new Error();
  } catch {
    throw new UserError(`${path}: its progress (metadata) is malformed: the header is corrupt`);
  }
  const weights = new Map<string, SafeTensor>();
  for (const [name, t] of parsed.tensors) {
    if (name.startsWith(MODEL)) weights.set(name.slice(MODEL.length), t);
  }
  assignStateDict(model, weights, path);
  const entries = new Map(stateEntries(model).map((e) => [e.name, e]));
  for (const [name, t] of parsed.tensors) {
    if (!name.startsWith(OPTIMIZER)) continue;
    const param = name.slice(OPTIMIZER.length, -MOMENTUM.length);
    const entry = entries.get(param);
    if (!entry) throw new UserError(`${path}: momentum buffer of unknown parameter ${param}`);
    tf.tidy(() =>
      opt.setBuffer(param, fromTorchLayout(entry, tf.tensor(t.data as Float32Array, t.shape)))
    );
  }
  return progress;
}
