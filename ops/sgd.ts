/**
 * The in-place SGD step over many parameters at once (`torch.optim.SGD`: weight decay,
 * momentum, dampening, Nesterov), as a backend provides it (the WebGPU layer: a multi-tensor
 * kernel, a few dispatches for a whole model). `training/optimizer.ts` uses it where the current
 * backend provides it ({@link sgdStepInPlace} returns `null` elsewhere) and tf ops otherwise.
 *
 * @module
 */
import type { tf } from "../deps.ts";
import { provided } from "./extensions.ts";

/** Hyperparameters of one update (torch's `SGD` ones). */
export interface SgdHyper {
  /** Learning rate. */
  lr: number;
  /** Momentum factor (0: no buffer). */
  momentum: number;
  /** Weight decay added to the gradient. */
  weightDecay: number;
  /** Dampening of the momentum. */
  dampening: number;
  /** Nesterov momentum. */
  nesterov: boolean;
}

/** One parameter of an in-place update. */
export interface SgdSlot {
  /** The parameter (float32). */
  param: tf.Variable;
  /** Its gradient (float32, the parameter's shape). */
  grad: tf.Tensor;
  /** Its momentum buffer; `null` on the first step (a buffer is made) or without momentum. */
  buffer: tf.Variable | null;
  /** Name of a new buffer (the tfjs variable name). */
  bufferName: string;
}

/**
 * Whether the current backend updates parameters in place.
 *
 * @returns true when {@link sgdStepInPlace} applies
 * @example
 * ```ts
 * import { inPlaceSgdAvailable } from "./sgd.ts";
 * console.log(typeof inPlaceSgdAvailable()); // "boolean"
 * ```
 */
export function inPlaceSgdAvailable(): boolean {
  return provided("sgdStep") !== null;
}

/**
 * One in-place SGD update of every slot, where the current backend provides it. Buffers made
 * for slots without one are returned, in slot order (`null` where a slot had one or momentum is
 * off); they are new variables the caller keeps.
 *
 * @param slots parameters, gradients and buffers
 * @param h hyperparameters
 * @returns the new buffers by slot, or `null` when the backend has no in-place update
 */
export function sgdStepInPlace(
  slots: readonly SgdSlot[],
  h: SgdHyper,
): (tf.Variable | null)[] | null {
  const step = provided("sgdStep");
  return step === null ? null : step(slots, h);
}
