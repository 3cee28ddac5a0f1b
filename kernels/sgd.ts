/**
 * The SGD update of every parameter at once (`torch.optim.SGD`: weight decay, momentum,
 * dampening, Nesterov), in place, as a multi-tensor kernel: a ResNet20's 65 parameters and
 * momentum buffers take 5 dispatches (at 64 storage buffers per dispatch), where one tfjs
 * program per output would take 130. Parameters and buffers keep their GPU buffers from step to
 * step, as PyTorch's do.
 *
 * Every arithmetic step is the float32 step torch (and the tf-ops path) takes, in the same order:
 *
 * ```
 * d = g + wd * p                                       (when wd != 0)
 * buf = first ? d : buf * momentum + (1 - dampening) * d
 * d = nesterov ? d + momentum * buf : buf              (when momentum != 0)
 * p = p - lr * d
 * ```
 *
 * A shader compiler may contract a multiply and an add into one fused multiply-add, so results
 * can differ from the tf-ops path by an ulp.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import { ownForWrite, privateCopy, uninitialized } from "./direct.ts";
import { type MultiTensorKernel, runMultiTensor } from "./multi_tensor.ts";

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

/** Updates and dispatches since the last {@link resetSgdKernelStats}. */
export const sgdKernelStats = { calls: 0, dispatches: 0 };

/** Zeroes {@link sgdKernelStats}. */
export function resetSgdKernelStats(): void {
  sgdKernelStats.calls = 0;
  sgdKernelStats.dispatches = 0;
}

/** The kernel for a configuration. Items: `[param, grad]` or `[param, buffer, grad]`. */
function sgdKernel(h: SgdHyper, first: boolean): MultiTensorKernel {
  const decay = h.weightDecay !== 0;
  const momentum = h.momentum !== 0;
  const name = `regnet_sgd_${momentum ? 1 : 0}${first ? 1 : 0}${decay ? 1 : 0}` +
    `${h.nesterov ? 1 : 0}`;
  // p = (lr, momentum, wd, 1 - dampening)
  return {
    name,
    accesses: momentum ? ["read_write", "read_write", "read"] : ["read_write", "read"],
    body: (t, type) => {
      const P = t(0), G = momentum ? t(2) : t(1), M = t(1);
      const lines = [`let d : ${type} = ${decay ? `${G}[i] + ${P}[i] * p.z` : `${G}[i]`};`];
      let direction = "d";
      if (momentum) {
        lines.push(
          first ? `let b : ${type} = d;` : `let b : ${type} = ${M}[i] * p.y + d * p.w;`,
          `${M}[i] = b;`,
        );
        direction = h.nesterov ? "(d + b * p.y)" : "b";
      }
      lines.push(`${P}[i] = ${P}[i] - ${direction} * p.x;`);
      return lines.join("\n");
    },
  };
}

/**
 * One in-place SGD update of every slot on the webgpu backend (see the module doc). Buffers made
 * for slots without one are returned, in slot order (`null` where a slot had one or momentum is
 * off); they are new variables the caller keeps.
 *
 * @param backend the webgpu backend
 * @param slots parameters, gradients and buffers
 * @param h hyperparameters
 * @returns the new buffers, by slot
 */
export function sgdStepInPlace(
  backend: WebGPUBackend,
  slots: readonly SgdSlot[],
  h: SgdHyper,
): (tf.Variable | null)[] {
  const params = [h.lr, h.momentum, h.weightDecay, 1 - h.dampening];
  const withMomentum = h.momentum !== 0;
  const made: (tf.Variable | null)[] = [];
  const later: { tensors: tf.TensorInfo[]; params: number[] }[] = [];
  const first: { tensors: tf.TensorInfo[]; params: number[] }[] = [];
  const temporaries: tf.Tensor[] = [];
  for (const s of slots) {
    if (!tf.util.arraysEqual(s.grad.shape, s.param.shape)) {
      throw new Error(`SGD: gradient shape [${s.grad.shape}] differs from [${s.param.shape}]`);
    }
    const param = ownForWrite(backend, s.param);
    let grad = s.grad;
    if (grad.dataId === param.dataId || (s.buffer && grad.dataId === s.buffer.dataId)) {
      grad = privateCopy(backend, grad);
      temporaries.push(grad);
    }
    if (!withMomentum) {
      later.push({ tensors: [param, grad], params });
      made.push(null);
    } else if (s.buffer) {
      later.push({ tensors: [param, ownForWrite(backend, s.buffer), grad], params });
      made.push(null);
    } else {
      const fresh = uninitialized(backend, param.shape);
      const buffer = tf.variable(fresh, false, s.bufferName);
      fresh.dispose();
      first.push({ tensors: [param, buffer, grad], params });
      made.push(buffer);
    }
  }
  sgdKernelStats.calls++;
  if (first.length > 0) {
    sgdKernelStats.dispatches += runMultiTensor(backend, sgdKernel(h, true), first);
  }
  if (later.length > 0) {
    sgdKernelStats.dispatches += runMultiTensor(backend, sgdKernel(h, false), later);
  }
  tf.dispose(temporaries);
  return made;
}

let enabled = false;

/**
 * Turns the in-place SGD update on for the webgpu backend (`SGD.step` uses it there).
 * `registerFastKernels` calls it. Idempotent.
 *
 * @example
 * ```ts
 * import { registerSgdKernel, unregisterSgdKernel } from "./sgd.ts";
 * registerSgdKernel();
 * unregisterSgdKernel();
 * ```
 */
export function registerSgdKernel(): void {
  enabled = true;
}

/**
 * Turns the in-place SGD update off (`SGD.step` then uses tf ops). Idempotent.
 *
 * @example
 * ```ts
 * import { unregisterSgdKernel } from "./sgd.ts";
 * unregisterSgdKernel();
 * ```
 */
export function unregisterSgdKernel(): void {
  enabled = false;
}

/**
 * Whether `SGD.step` updates in place on the current backend: the kernel is on and the
 * backend is webgpu.
 *
 * @returns true when the in-place update applies
 * @example
 * ```ts
 * import { sgdKernelRegistered } from "./sgd.ts";
 * console.log(typeof sgdKernelRegistered()); // "boolean"
 * ```
 */
export function sgdKernelRegistered(): boolean {
  return enabled && tf.getBackend() === "webgpu";
}
