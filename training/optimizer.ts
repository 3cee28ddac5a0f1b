/**
 * Stochastic gradient descent with `torch.optim.SGD`'s semantics: weight decay added to the
 * gradient, a momentum buffer that starts as the first gradient, optional dampening and Nesterov.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { inPlaceSgdAvailable, type SgdSlot, sgdStepInPlace } from "../ops/sgd.ts";

/** Instances made so far: each names its tfjs variables apart from every other's. */
let instances = 0;

/** Hyperparameters of {@link SGD}, as `torch.optim.SGD` takes them. */
export interface SGDOptions {
  /** Learning rate. */
  lr: number;
  /** Momentum factor; 0 when absent. */
  momentum?: number;
  /** L2 penalty added to the gradient; 0 when absent. */
  weightDecay?: number;
  /** Dampening of the momentum; 0 when absent. */
  dampening?: number;
  /** Nesterov momentum; false when absent. */
  nesterov?: boolean;
}

/** A parameter the optimizer updates, by a stable name. */
export interface NamedVariable {
  /** Stable name (the PyTorch state-dict name), which keys the momentum buffers. */
  name: string;
  /** The variable. */
  variable: tf.Variable;
}

/**
 * `torch.optim.SGD`. Its momentum buffers are keyed by parameter name, so a checkpoint can save
 * and restore them ({@link SGD.buffers}, {@link SGD.setBuffer}).
 *
 * @example
 * ```ts
 * import { initBackend } from "../backend/backend.ts";
 * import { tf } from "../deps.ts";
 * import { SGD } from "./optimizer.ts";
 * await initBackend({ backend: "cpu", log: null });
 * const w = tf.variable(tf.tensor1d([1, 2]));
 * const opt = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
 * opt.step([{ name: "w", variable: w }], new Map([["w", tf.tensor1d([0.5, 0.5])]]));
 * console.log(await w.data()); // [0.94999, 1.94998]
 * ```
 */
export class SGD {
  /** Learning rate; may be changed between steps (schedules). */
  lr: number;
  /** Momentum factor. */
  readonly momentum: number;
  /** Weight decay. */
  readonly weightDecay: number;
  /** Dampening. */
  readonly dampening: number;
  /** Nesterov momentum. */
  readonly nesterov: boolean;
  #buffers = new Map<string, tf.Variable>();
  /** Prefix of this optimizer's tfjs variable names (tfjs names variables process-wide). */
  readonly #prefix = `sgd${instances++}`;

  /** @param options hyperparameters */
  constructor(options: SGDOptions) {
    this.lr = options.lr;
    this.momentum = options.momentum ?? 0;
    this.weightDecay = options.weightDecay ?? 0;
    this.dampening = options.dampening ?? 0;
    this.nesterov = options.nesterov ?? false;
    for (const [name, value] of Object.entries({ lr: this.lr, momentum: this.momentum })) {
      if (!(value >= 0)) throw new RangeError(`SGD: ${name} must be >= 0, got ${value}`);
    }
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new RangeError("SGD: Nesterov momentum requires a momentum and zero dampening");
    }
  }

  /**
   * One update of every parameter that has a gradient. Where the backend provides an in-place
   * update (`ops/sgd.ts`; webgpu after `installWebGpu`: one multi-tensor kernel, a few
   * dispatches for the whole model), every float32 parameter and its momentum buffer are
   * updated in place; elsewhere tf ops do it,
   * assigning new tensors.
   *
   * @param params the parameters
   * @param grads gradients by parameter name; parameters without one are left alone
   */
  step(params: readonly NamedVariable[], grads: Map<string, tf.Tensor>): void {
    const inPlace = inPlaceSgdAvailable();
    const slots: SgdSlot[] = [];
    const names: string[] = [];
    for (const { name, variable } of params) {
      const grad = grads.get(name);
      if (!grad) continue;
      if (inPlace && variable.dtype === "float32" && grad.dtype === "float32") {
        const buffer = this.momentum !== 0 ? this.#buffers.get(name) ?? null : null;
        slots.push({ param: variable, grad, buffer, bufferName: this.#bufferName(name) });
        names.push(name);
        continue;
      }
      tf.tidy(() => {
        let d = this.weightDecay !== 0 ? grad.add(variable.mul(this.weightDecay)) : grad;
        if (this.momentum !== 0) {
          const buffer = this.#buffers.get(name);
          let next: tf.Tensor;
          if (!buffer) {
            next = d;
            this.#buffers.set(name, tf.variable(d.clone(), false, this.#bufferName(name)));
          } else {
            next = buffer.mul(this.momentum).add(this.dampening ? d.mul(1 - this.dampening) : d);
            buffer.assign(next);
          }
          d = this.nesterov ? d.add(next.mul(this.momentum)) : next;
        }
        variable.assign(variable.sub(d.mul(this.lr)));
      });
    }
    if (slots.length === 0) return;
    const made = sgdStepInPlace(slots, {
      lr: this.lr,
      momentum: this.momentum,
      weightDecay: this.weightDecay,
      dampening: this.dampening,
      nesterov: this.nesterov,
    });
    made?.forEach((buffer, i) => {
      if (buffer) this.#buffers.set(names[i], buffer);
    });
  }

  /** The momentum buffers by parameter name (live variables; do not dispose). */
  buffers(): ReadonlyMap<string, tf.Variable> {
    return this.#buffers;
  }

  /** Sets (or replaces) the momentum buffer of a parameter, for resuming. */
  setBuffer(name: string, value: tf.Tensor): void {
    const old = this.#buffers.get(name);
    if (old) old.assign(value);
    else this.#buffers.set(name, tf.variable(value, false, this.#bufferName(name)));
  }

  /** The tfjs variable name of a parameter's momentum buffer: unique to this optimizer. */
  #bufferName(param: string): string {
    return `${this.#prefix}/${param}/momentum_buffer`;
  }

  /** Frees the momentum buffers (the optimizer may step again: they start afresh). */
  dispose(): void {
    for (const b of this.#buffers.values()) b.dispose();
    this.#buffers.clear();
  }
}
