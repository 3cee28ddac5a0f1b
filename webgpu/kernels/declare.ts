/**
 * Kernels as declarations. A kernel of this folder is either a **direct kernel**
 * (`runtime/direct.ts`'s {@link DirectKernel}: the whole WGSL module and its bindings, recorded
 * by the toolkit) or a **program kernel** ({@link ProgramKernel}: the body of a tfjs program,
 * run by tfjs's `runWebGPUProgram`, which writes the head: bindings, uniforms, index helpers).
 * Either way the declaration is a name and functions of its parameters `P` (everything the WGSL
 * depends on, and nothing else), and the pipeline cache key is derived from the two
 * ({@link kernelKey}), never written by hand.
 *
 * @module
 */
import type { tf } from "../../deps.ts";
import type { Extensions } from "../../ops/extensions.ts";
import type { KernelLimits } from "../../ops/support.ts";
import { kernelKey } from "../runtime/direct.ts";
import type { WebGPUProgram } from "../runtime/tfjs.ts";
import type { SplitPolicy } from "./conv_gemm.ts";

export { type DirectKernel, kernelKey } from "../runtime/direct.ts";

/** The facts tfjs writes a program's WGSL head from, and the body. */
export interface ProgramShader {
  /** Input names, in input order (tfjs binds `result` first, then these). */
  variableNames: string[];
  /** Lanes per element of each input (4: `vec4`); 1 when absent. */
  variableComponents?: number[];
  /** Lanes per element of the output. */
  outputComponent?: number;
  /** Invocations per workgroup. */
  workgroupSize: [number, number, number];
  /** The program's own uniform fields (WGSL struct members), if any. */
  uniforms?: string;
  /** Whether tfjs adds the `size` uniform (the output's element count). */
  size?: boolean;
  /** Whether the output is atomic. */
  atomic?: boolean;
  /** The body: WGSL after tfjs's head (a `main`, and helpers); called when tfjs compiles. */
  code: () => string;
}

/** A tfjs program's declaration. */
export interface ProgramKernel<P> {
  /** The kernel family. */
  name: string;
  /** The head facts and the body, from the parameters. */
  shader(params: P): ProgramShader;
}

/** What one call of a program kernel adds: its output and its grid. */
export interface ProgramCall {
  /** The output's shape. */
  outputShape: number[];
  /** How output coordinates map onto the grid (tfjs's `dispatchLayout`). */
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  /** Workgroups per dimension. */
  dispatch: [number, number, number];
}

/**
 * A tfjs program for one call of a program kernel, its `shaderKey` derived from the declaration
 * ({@link kernelKey} of the name and parameters).
 *
 * @param kernel the declaration
 * @param params its parameters
 * @param call the output shape and the grid
 * @returns the program, for `backend.runWebGPUProgram`
 */
export function program<P>(kernel: ProgramKernel<P>, params: P, call: ProgramCall): WebGPUProgram {
  const { code, ...head } = kernel.shader(params);
  const p = { ...head, ...call, shaderKey: kernelKey(kernel.name, params), getUserCode: code };
  return p as unknown as WebGPUProgram;
}

/** The tuning knobs an install hands its kernels (owned by `installWebGpu`'s handle). */
export interface TuningPolicies {
  /** Split-K and GEMM layout of the convolution GEMMs (by adapter profile). */
  conv: SplitPolicy;
  /** Split-K of the depthwise filter gradient. */
  depthwise: SplitPolicy;
  /** Split of the grouped convolution's filter gradient. */
  grouped: SplitPolicy;
}

/** One tfjs kernel of the registration list (`list.ts`). */
export interface KernelEntry {
  /** The tfjs kernel name (an op of `ops/`, or a stock tfjs op this one replaces). */
  kernelName: string;
  /**
   * Makes the kernel function. `policies` is the install's (read at each call, so a second
   * install's knobs apply); `stock` is tfjs's own kernel for a replaced op (what runs the
   * calls our kernel does not cover), undefined for an op of our own.
   */
  make(policies: TuningPolicies, stock?: tf.KernelFunc): tf.KernelFunc;
  /** Replaces a stock tfjs kernel (kept, and restored by `uninstall`). */
  replacesStock?: boolean;
  /** The shapes and attributes the kernel takes, for `ops/support.ts`'s `kernelAccepts`. */
  limits?: KernelLimits;
}

/** One extension of the registration list: a name of `ops/extensions.ts` and its implementation. */
export type ExtensionEntry = { [K in keyof Extensions]: { name: K; impl: Extensions[K] } }[
  keyof Extensions
];
