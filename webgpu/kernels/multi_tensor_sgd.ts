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
import { tf, type WebGPUBackend } from "../../deps.ts";
import type { SgdHyper, SgdSlot } from "../../ops/sgd.ts";
import { ownForWrite, privateCopy, uninitialized } from "../runtime/direct.ts";
import { counters } from "../runtime/counters.ts";
import { type MultiTensorKernel, runMultiTensor } from "./multi_tensor.ts";

/** Updates and dispatches (the `sgd` counter group). */
const stats = counters.group("sgd", { calls: 0, dispatches: 0 });

/** What the SGD shader depends on. */
interface SgdKernelParams {
  /** Momentum on (items `[param, buffer, grad]`, else `[param, grad]`). */
  momentum: boolean;
  /** The first step (the buffer is set to the direction). */
  first: boolean;
  /** Weight decay on. */
  decay: boolean;
  /** Nesterov momentum. */
  nesterov: boolean;
}

/** The SGD update, `p = (lr, momentum, wd, 1 - dampening)` per item. */
const SGD_KERNEL: MultiTensorKernel<SgdKernelParams> = {
  name: "sgd",
  accesses: (k) => k.momentum ? ["read_write", "read_write", "read"] : ["read_write", "read"],
  body: (k, t, type) => {
    const P = t(0), G = k.momentum ? t(2) : t(1), M = t(1);
    const lines = [`let d : ${type} = ${k.decay ? `${G}[i] + ${P}[i] * p.z` : `${G}[i]`};`];
    let direction = "d";
    if (k.momentum) {
      lines.push(
        k.first ? `let b : ${type} = d;` : `let b : ${type} = ${M}[i] * p.y + d * p.w;`,
        `${M}[i] = b;`,
      );
      direction = k.nesterov ? "(d + b * p.y)" : "b";
    }
    lines.push(`${P}[i] = ${P}[i] - ${direction} * p.x;`);
    return lines.join("\n");
  },
};

/** The kernel parameters of a configuration. */
function sgdParams(h: SgdHyper, first: boolean): SgdKernelParams {
  return {
    momentum: h.momentum !== 0,
    first,
    decay: h.weightDecay !== 0,
    nesterov: h.nesterov,
  };
}

/**
 * One in-place SGD update of every slot on the webgpu backend (see the module doc): the
 * `sgdStep` extension of `ops/extensions.ts`. Buffers made for slots without one are returned,
 * in slot order (`null` where a slot had one or momentum is off); they are new variables the
 * caller keeps.
 *
 * @param slots parameters, gradients and buffers
 * @param h hyperparameters
 * @returns the new buffers, by slot
 */
export function multiTensorSgd(slots: readonly SgdSlot[], h: SgdHyper): (tf.Variable | null)[] {
  const backend = tf.backend() as WebGPUBackend;
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
  stats.calls++;
  if (first.length > 0) {
    stats.dispatches += runMultiTensor(backend, SGD_KERNEL, sgdParams(h, true), first);
  }
  if (later.length > 0) {
    stats.dispatches += runMultiTensor(backend, SGD_KERNEL, sgdParams(h, false), later);
  }
  tf.dispose(temporaries);
  return made;
}
