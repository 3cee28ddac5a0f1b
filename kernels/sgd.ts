/**
 * The SGD update of one parameter (`torch.optim.SGD`: weight decay, momentum, dampening,
 * Nesterov) as a custom tfjs kernel, `RegnetSgdStep`, in one or two WebGPU dispatches instead of
 * the five to seven elementwise kernels of the tf-ops formulation.
 *
 * Inputs `param`, `grad` and, after the first step, `buffer` (the momentum buffer); outputs the
 * new parameter and, when momentum is on, the new momentum buffer. WebGPU allows one writable
 * binding per dispatch and a buffer may not be read and written in one dispatch, so with momentum
 * the kernel runs two small programs: the first writes the new buffer, the second the new
 * parameter (it re-derives `d` from the same inputs in the same order, so both see the same
 * values). Every arithmetic step is the float32 step torch (and the tf-ops path) takes, in the
 * same order:
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
import type { ProgramUniforms, WebGPUProgram } from "./gemm_program.ts";

/** The kernel name `SGD.step` looks up with `tf.getKernel`. */
export const SGD_KERNEL_NAME = "RegnetSgdStep";

/** Attributes of the {@link SGD_KERNEL_NAME} kernel (torch's `SGD` hyperparameters). */
export interface SgdKernelAttrs {
  /** Learning rate. */
  lr: number;
  /** Momentum factor (0: no buffer, one output). */
  momentum: number;
  /** Weight decay added to the gradient. */
  weightDecay: number;
  /** Dampening of the momentum. */
  dampening: number;
  /** Nesterov momentum. */
  nesterov: boolean;
  /** First step: the buffer starts as `d` (no `buffer` input). */
  first: boolean;
}

/** Kernel calls and WebGPU dispatches since the last {@link resetSgdKernelStats}. */
export const sgdKernelStats = { calls: 0, dispatches: 0 };

/** Zeroes {@link sgdKernelStats}. */
export function resetSgdKernelStats(): void {
  sgdKernelStats.calls = 0;
  sgdKernelStats.dispatches = 0;
}

/** Which value a program writes. */
type Target = "buffer" | "param";
/** How the program gets the step direction `d` for the parameter update. */
type Direction = "grad" | "buffer" | "nesterov";

/**
 * One elementwise SGD program over a flat view of the parameter: writes either the new momentum
 * buffer or the new parameter. Uniforms: `lr, momentum, wd, omd` (omd = 1 - dampening).
 */
export class SgdProgram implements WebGPUProgram {
  /** Input buffer names, in the order the tensors are passed. */
  variableNames: string[];
  /** Components per input element. */
  variableComponents: number[];
  /** Components per output element (4 when the size is a multiple of 4). */
  outputComponent: number;
  /** Flat output shape. */
  outputShape: number[];
  /** Cache key of the compiled pipeline. */
  shaderKey: string;
  /** Flat dispatch. */
  dispatchLayout: { x: number[] };
  /** Workgroups per dimension. */
  dispatch: [number, number, number];
  /** Invocations per workgroup. */
  workgroupSize: [number, number, number] = [64, 1, 1];
  /** Ask the backend for the `size` uniform. */
  size = true;
  /** Program-defined uniforms. */
  uniforms = "lr : f32, momentum : f32, wd : f32, omd : f32,";
  private readonly target: Target;
  private readonly direction: Direction;
  private readonly first: boolean;
  private readonly decay: boolean;

  /**
   * Builds one program.
   *
   * @param n elements of the parameter
   * @param opts what to write, how `d` is formed, first step, weight decay on
   */
  constructor(
    n: number,
    opts: { target: Target; direction: Direction; first: boolean; decay: boolean },
  ) {
    this.target = opts.target;
    this.direction = opts.direction;
    this.first = opts.first;
    this.decay = opts.decay;
    const names = this.needsGrad() ? ["G"] : [];
    if (this.needsParam()) names.push("P");
    if (this.needsBuffer()) names.push("M");
    this.variableNames = names;
    const c = n % 4 === 0 ? 4 : 1;
    this.outputComponent = c;
    this.variableComponents = names.map(() => c);
    this.outputShape = [n];
    this.dispatchLayout = { x: [0] };
    this.dispatch = [Math.ceil(n / c / this.workgroupSize[0]), 1, 1];
    this.shaderKey = `regnet_sgd_${this.target}_${this.direction}_${this.first ? 1 : 0}` +
      `${this.decay ? 1 : 0}_${c}`;
  }

  /** The gradient is read unless the parameter update only needs the new buffer. */
  private needsGrad(): boolean {
    return this.target === "buffer" || this.direction !== "buffer";
  }

  /** The parameter is read for weight decay and for its own update. */
  private needsParam(): boolean {
    return this.target === "param" || this.decay;
  }

  /** The (old or new) momentum buffer is read unless this is the first buffer write. */
  private needsBuffer(): boolean {
    return this.target === "buffer" ? !this.first : this.direction !== "grad";
  }

  /**
   * The shader source after the backend's preamble.
   *
   * @returns the WGSL body
   */
  getUserCode(): string {
    const t = this.outputComponent === 4 ? "vec4<f32>" : "f32";
    // d = g + wd * p, as `grad.add(param.mul(wd))`.
    const decayed = this.decay ? "G[index] + P[index] * uniforms.wd" : "G[index]";
    let body: string;
    if (this.target === "buffer") {
      body = this.first ? `let b : ${t} = ${decayed};` : `let d : ${t} = ${decayed};
           let b : ${t} = M[index] * uniforms.momentum + d * uniforms.omd;`;
      body += "\nsetOutputAtIndex(index, b);";
    } else {
      const d = this.direction === "grad"
        ? `let d : ${t} = ${decayed};`
        : this.direction === "buffer"
        ? `let d : ${t} = M[index];`
        : `let g : ${t} = ${decayed};
           let d : ${t} = g + M[index] * uniforms.momentum;`;
      body = `${d}
        setOutputAtIndex(index, P[index] - d * uniforms.lr);`;
    }
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`;
  }
}

/** Float32 uniforms in the order of {@link SgdProgram.uniforms}. */
function sgdUniforms(a: SgdKernelAttrs): ProgramUniforms {
  return [
    { type: "float32", data: [a.lr] },
    { type: "float32", data: [a.momentum] },
    { type: "float32", data: [a.weightDecay] },
    { type: "float32", data: [1 - a.dampening] },
  ];
}

/** A flat view of a tensor (same data, shape `[n]`): keeps the shader independent of rank. */
function flat(t: tf.TensorInfo): tf.TensorInfo {
  return { dataId: t.dataId, shape: [tf.util.sizeFromShape(t.shape)], dtype: t.dtype };
}

/**
 * Runs one SGD update on the webgpu backend.
 *
 * @param backend the tfjs webgpu backend
 * @param inputs the parameter, its gradient and (unless first or momentum 0) the momentum buffer
 * @param attrs hyperparameters
 * @returns `[newParam]`, or `[newParam, newBuffer]` when momentum is on
 */
export function runSgdStep(
  backend: WebGPUBackend,
  inputs: { param: tf.TensorInfo; grad: tf.TensorInfo; buffer?: tf.TensorInfo },
  attrs: SgdKernelAttrs,
): tf.TensorInfo[] {
  const { param, grad, buffer } = inputs;
  for (const t of [grad, buffer]) {
    if (t !== undefined && !tf.util.arraysEqual(t.shape, param.shape)) {
      throw new Error(`${SGD_KERNEL_NAME}: shape ${t.shape} differs from the parameter's`);
    }
  }
  const withMomentum = attrs.momentum !== 0;
  if (withMomentum && !attrs.first && buffer === undefined) {
    throw new Error(`${SGD_KERNEL_NAME}: a momentum buffer is required after the first step`);
  }
  const n = tf.util.sizeFromShape(param.shape);
  const decay = attrs.weightDecay !== 0;
  const uniforms = sgdUniforms(attrs);
  const byName: Record<string, tf.TensorInfo | undefined> = {
    G: flat(grad),
    P: flat(param),
    M: buffer && flat(buffer),
  };
  const run = (program: SgdProgram, extra?: tf.TensorInfo): tf.TensorInfo => {
    const ins = program.variableNames.map((v) => v === "M" && extra ? extra : byName[v]!);
    const out = backend.makeTensorInfo(param.shape, "float32");
    sgdKernelStats.dispatches++;
    return backend.runWebGPUProgram(program, ins, "float32", uniforms, out);
  };
  sgdKernelStats.calls++;
  if (!withMomentum) {
    return [run(new SgdProgram(n, { target: "param", direction: "grad", first: false, decay }))];
  }
  const nextBuffer = run(
    new SgdProgram(n, { target: "buffer", direction: "grad", first: attrs.first, decay }),
  );
  const direction: Direction = attrs.nesterov ? "nesterov" : "buffer";
  const nextParam = run(
    new SgdProgram(n, { target: "param", direction, first: false, decay }),
    flat(nextBuffer),
  );
  return [nextParam, nextBuffer];
}

/** Marks our kernel function, so that a second copy of this module recognises it. */
const FAST_SGD = Symbol.for("regnet-vision.fastSgdKernel");

/**
 * Registers the {@link SGD_KERNEL_NAME} kernel for the webgpu backend. Idempotent.
 *
 * @example
 * ```ts
 * import { registerSgdKernel, unregisterSgdKernel } from "./sgd.ts";
 * registerSgdKernel();
 * unregisterSgdKernel();
 * ```
 */
export function registerSgdKernel(): void {
  if (tf.getKernel(SGD_KERNEL_NAME, "webgpu") !== undefined) return;
  const kernelFunc: tf.KernelFunc = (args) => {
    const { param, grad, buffer } = args.inputs as {
      param: tf.TensorInfo;
      grad: tf.TensorInfo;
      buffer?: tf.TensorInfo;
    };
    const attrs = args.attrs as unknown as SgdKernelAttrs;
    return runSgdStep(args.backend as WebGPUBackend, { param, grad, buffer }, attrs);
  };
  (kernelFunc as unknown as Record<symbol, boolean>)[FAST_SGD] = true;
  tf.registerKernel({ kernelName: SGD_KERNEL_NAME, backendName: "webgpu", kernelFunc });
}

/**
 * Removes the {@link SGD_KERNEL_NAME} kernel from the webgpu backend (when this module
 * registered it). Idempotent.
 *
 * @example
 * ```ts
 * import { unregisterSgdKernel } from "./sgd.ts";
 * unregisterSgdKernel();
 * ```
 */
export function unregisterSgdKernel(): void {
  if (sgdKernelRegistered()) tf.unregisterKernel(SGD_KERNEL_NAME, "webgpu");
}

/**
 * Whether this module's SGD kernel is registered for the webgpu backend.
 *
 * @returns true when registered
 * @example
 * ```ts
 * import { sgdKernelRegistered } from "./sgd.ts";
 * console.log(typeof sgdKernelRegistered()); // "boolean"
 * ```
 */
export function sgdKernelRegistered(): boolean {
  const config = tf.getKernel(SGD_KERNEL_NAME, "webgpu");
  return config !== undefined &&
    (config.kernelFunc as unknown as Record<symbol, boolean>)[FAST_SGD] === true;
}
