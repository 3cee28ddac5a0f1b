/**
 * Swaps tfjs's `webgpu` kernels for `Conv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter`
 * (implicit GEMMs), `FusedConv2D` without bias/activation (the same GEMM) and
 * `DepthwiseConv2dNativeBackpropFilter` (split reduction) with the kernels of this folder, and
 * back. Model code does not change: every `tf.conv2d` (and its gradients)
 * and every depthwise filter gradient on the webgpu backend goes through the registered kernels.
 * Configurations the fast kernels do not cover (NCHW, dilation > 1, non-float32, a `dy` whose
 * shape is not the output shape the attributes give) are handed to the stock kernel, which
 * computes them as tfjs does; see {@link registerFastKernels} for the shapes each one takes.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import {
  convGemmFits,
  type ConvInfo,
  type ConvOp,
  CPU_SPLIT_POLICY,
  DEFAULT_SPLIT_POLICY,
  runConvGemm,
  type SplitPolicy,
} from "./conv_gemm.ts";
import { runDepthwiseFilterGrad } from "./depthwise_filter_grad.ts";
import { registerSgdKernel, unregisterSgdKernel } from "./sgd.ts";
import { registerRunningStatsKernel, unregisterRunningStatsKernel } from "./running_stats.ts";
import { registerBatchNormKernels, unregisterBatchNormKernels } from "./batchnorm.ts";
import { registerSqueezeExciteKernels, unregisterSqueezeExciteKernels } from "./squeeze_excite.ts";
import { installDispatchCache, uninstallDispatchCache } from "./dispatch.ts";
import { registerGroupedConvKernels, unregisterGroupedConvKernels } from "./grouped_conv.ts";
import { ownKernelNames } from "./own_kernels.ts";

/** The kernels {@link registerFastKernels} replaces. */
export const FAST_KERNEL_NAMES = [
  "Conv2D",
  "Conv2DBackpropInput",
  "Conv2DBackpropFilter",
  "DepthwiseConv2dNativeBackpropFilter",
  "FusedConv2D",
] as const;
/** A kernel name {@link registerFastKernels} can replace. */
export type FastKernelName = typeof FAST_KERNEL_NAMES[number];

/** Options of {@link registerFastKernels}. */
export interface FastKernelOptions {
  /** Which kernels to replace; all of {@link FAST_KERNEL_NAMES} when absent. */
  kernels?: readonly FastKernelName[];
  /**
   * Which adapter the kernels are tuned for: `gpu` (workgroup-tiled GEMMs,
   * {@link DEFAULT_SPLIT_POLICY}), `cpu` (register-blocked GEMMs, {@link CPU_SPLIT_POLICY}), or
   * `auto` (the default): `cpu` on a software adapter ({@link adapterProfile}).
   */
  profile?: "auto" | KernelProfile;
  /** Split-K knobs over the profile's policy. */
  split?: Partial<SplitPolicy>;
}

/** The adapter kinds the kernels are tuned for. */
export type KernelProfile = "gpu" | "cpu";

/**
 * The profile for the current webgpu backend's adapter: `cpu` for a fallback (software)
 * adapter such as llvmpipe, lavapipe or SwiftShader, else `gpu`.
 *
 * @returns the profile; `gpu` when the backend is not webgpu or says nothing of its adapter
 * @example
 * ```ts
 * import { adapterProfile } from "./register.ts";
 * console.log(["gpu", "cpu"].includes(adapterProfile())); // true
 * ```
 */
export function adapterProfile(): KernelProfile {
  // The initialised backend only (`tf.findBackend` would start initialising one).
  const registry = (tf.engine() as unknown as { registry?: Record<string, unknown> }).registry;
  const backend = registry?.["webgpu"];
  const info = (backend as { device?: { adapterInfo?: GPUAdapterInfo } } | null)?.device
    ?.adapterInfo as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined;
  if (!info) return "gpu";
  if (info.isFallbackAdapter === true) return "cpu";
  const text = `${info.description ?? ""} ${info.device ?? ""}`;
  return /llvmpipe|lavapipe|swiftshader/i.test(text) ? "cpu" : "gpu";
}

/** Marks our kernel functions, so a second copy of this module recognises them. */
const FAST = Symbol.for("regnet-vision.fastConvKernel");
/** Stock configs, shared by every copy of this module in the process. */
const STOCK_KEY = Symbol.for("regnet-vision.stockConvKernels");
type Registry = Map<string, tf.KernelConfig>;
const globalStore = globalThis as unknown as Record<symbol, Registry | undefined>;
const stock: Registry = globalStore[STOCK_KEY] ??= new Map();
let policy: SplitPolicy = { ...DEFAULT_SPLIT_POLICY };
/** The depthwise filter gradient's split knobs (its own kernel; the profile does not apply). */
let depthwisePolicy: SplitPolicy = { ...DEFAULT_SPLIT_POLICY };
/** The options of the registration in force (profile resolved), or `null` when none is. */
let applied: FastKernelOptions | null = null;

type Attrs = {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat?: "NHWC" | "NCHW";
  dilations?: [number, number] | number;
  dimRoundingMode?: "floor" | "round" | "ceil";
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
};

/** The convolution facts for one call, or `null` when the fast kernels do not cover it. */
function convInfoOf(
  xShape: number[],
  filterShape: number[],
  attrs: Attrs,
  dtypes: string[],
): ConvInfo | null {
  if (attrs.dataFormat === "NCHW" || dtypes.some((d) => d !== "float32")) return null;
  if (xShape.length !== 4 || filterShape.length !== 4) return null;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1) return null;
  return info;
}

/**
 * Whether `dy` has the shape of the convolution's output, `[batch, outH, outW, outC]` as the
 * attributes give it. tfjs does not check this: `tf.conv2d`'s gradient drops
 * `dimRoundingMode`, so after a forward with `"round"` or `"ceil"` that added an output row or
 * column, the gradient kernels get a `dy` one row or column larger than their attributes say
 * (tfjs's kernels then ignore the extra row); `tf.conv2dTranspose` takes any `dy` size. The
 * GEMMs index `dy` by the attributes' shape, so they take only a `dy` that matches.
 */
function dyMatches(dy: tf.TensorInfo, info: ConvInfo): boolean {
  return tf.util.arraysEqual(dy.shape, info.outShape);
}

/** The depthwise filter gradient, or the stock kernel where it is not covered. */
function makeDepthwiseFilterGrad(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = args.attrs as unknown as Attrs;
    if (
      x.dtype !== "float32" || dy.dtype !== "float32" || !a.filterShape ||
      x.shape.length !== 4 || dy.shape.length !== 4 || a.dataFormat === "NCHW"
    ) {
      return fallback(args);
    }
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      a.filterShape,
      a.strides,
      a.dilations ?? 1,
      a.pad,
      a.dimRoundingMode,
      true,
    );
    if (!dyMatches(dy, info)) return fallback(args);
    return runDepthwiseFilterGrad(args.backend as WebGPUBackend, info, x, dy, depthwisePolicy);
  };
}

/**
 * `FusedConv2D` (what `tf.layers.conv2d` calls) without bias and activation is a plain
 * convolution: the fast forward takes it; with a bias or an activation the stock kernel does.
 */
function makeFusedConv2D(fallback: tf.KernelFunc): tf.KernelFunc {
  const conv = makeKernel("Conv2D", fallback);
  return (args) => {
    const { bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | null>;
    const activation = (args.attrs as { activation?: string }).activation;
    const plain = bias == null && preluActivationWeights == null &&
      (activation == null || activation === "linear");
    return plain ? conv(args) : fallback(args);
  };
}

function makeKernel(name: FastKernelName, fallback: tf.KernelFunc): tf.KernelFunc {
  if (name === "DepthwiseConv2dNativeBackpropFilter" || name === "FusedConv2D") {
    const fn = name === "FusedConv2D"
      ? makeFusedConv2D(fallback)
      : makeDepthwiseFilterGrad(fallback);
    (fn as unknown as Record<symbol, boolean>)[FAST] = true;
    return fn;
  }
  const op: ConvOp = name === "Conv2D"
    ? "forward"
    : name === "Conv2DBackpropInput"
    ? "inputGrad"
    : "filterGrad";
  const fn: tf.KernelFunc = (args) => {
    const { inputs, attrs } = args;
    const backend = args.backend as WebGPUBackend;
    const a = attrs as unknown as Attrs;
    let info: ConvInfo | null = null;
    let ins: [tf.TensorInfo, tf.TensorInfo];
    if (op === "forward") {
      const { x, filter } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
      info = convInfoOf(x.shape, filter.shape, a, [x.dtype, filter.dtype]);
      ins = [x, filter];
    } else if (op === "inputGrad") {
      const { dy, filter } = inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
      info = a.inputShape
        ? convInfoOf(a.inputShape, filter.shape, a, [dy.dtype, filter.dtype])
        : null;
      if (info !== null && !dyMatches(dy, info)) info = null;
      ins = [dy, filter];
    } else {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      info = a.filterShape ? convInfoOf(x.shape, a.filterShape, a, [x.dtype, dy.dtype]) : null;
      if (info !== null && !dyMatches(dy, info)) info = null;
      ins = [x, dy];
    }
    if (info === null || !convGemmFits(op, info, policy)) return fallback(args);
    return runConvGemm(backend, op, info, ins, policy);
  };
  (fn as unknown as Record<symbol, boolean>)[FAST] = true;
  return fn;
}

function isFast(config: tf.KernelConfig | undefined): boolean {
  return config !== undefined &&
    (config.kernelFunc as unknown as Record<symbol, boolean>)[FAST] === true;
}

/**
 * Replaces tfjs's webgpu kernels of {@link FAST_KERNEL_NAMES} with the fast ones, and registers
 * the toolkit's new ops (batch norm, squeeze-excite, running statistics, grouped convolution;
 * see {@link registeredKernelNames}). Idempotent; a second call only updates the profile and
 * split policy. The stock kernels are kept, and every call a fast kernel does not take goes to
 * them, so results are tfjs's for every input tfjs accepts. The fast kernels take:
 *
 * - `Conv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter`: rank-4 NHWC float32 tensors,
 *   dilation 1, any stride and padding (`"same"`, `"valid"`, a number, explicit pairs) with any
 *   `dimRoundingMode`, and, for the gradients, a `dy` shaped `[batch, outH, outW, outC]` as the
 *   attributes give (not so after a `"round"`/`"ceil"` forward, whose gradient tfjs computes
 *   without the rounding mode, nor for a `tf.conv2dTranspose` with a mismatched output shape);
 *   within WebGPU's workgroup-count limits ({@link convGemmFits}).
 * - `FusedConv2D`: as `Conv2D`, without bias and with no (or a linear) activation.
 * - `DepthwiseConv2dNativeBackpropFilter`: rank-4 NHWC float32 `x` and a `dy` shaped as the
 *   attributes' output; any stride, padding, rounding mode and dilation.
 *
 * @param options which kernels, the adapter profile and the split-K knobs
 * @example
 * ```ts
 * import { registerFastKernels, unregisterFastKernels } from "./register.ts";
 * registerFastKernels();
 * unregisterFastKernels();
 * ```
 */
export function registerFastKernels(options: FastKernelOptions = {}): void {
  const profile = !options.profile || options.profile === "auto"
    ? adapterProfile()
    : options.profile;
  const base = profile === "cpu" ? CPU_SPLIT_POLICY : DEFAULT_SPLIT_POLICY;
  policy = { ...base, ...options.split };
  depthwisePolicy = { ...DEFAULT_SPLIT_POLICY, ...options.split };
  applied = { ...options, profile, split: { ...options.split } };
  registerSgdKernel(); // a new kernel (no stock one): the fused SGD update, `kernels/sgd.ts`
  // New kernels (no stock ones): fused training-mode batch norm and its gradient.
  // The same chunking on every adapter: the chunks fix the order of the statistics' sums, and
  // the models' PyTorch parity (ReLU kinks included) holds for this order.
  registerBatchNormKernels();
  // New kernels (no stock ones): squeeze-and-excitation and its gradient, `squeeze_excite.ts`.
  registerSqueezeExciteKernels();
  // A new kernel (no stock one): BatchNorm's running averages, `kernels/running_stats.ts`.
  registerRunningStatsKernel();
  // New kernels (no stock ones): grouped convolution and its gradients, `kernels/grouped_conv.ts`.
  registerGroupedConvKernels();
  // Cheaper dispatches (cached uniforms and bind groups), `kernels/dispatch.ts`.
  installDispatchCache();
  for (const name of options.kernels ?? FAST_KERNEL_NAMES) {
    const current = tf.getKernel(name, "webgpu");
    if (current === undefined || isFast(current)) continue;
    stock.set(name, current);
    tf.unregisterKernel(name, "webgpu");
    tf.registerKernel({
      kernelName: name,
      backendName: "webgpu",
      kernelFunc: makeKernel(name, current.kernelFunc),
    });
  }
}

/**
 * Puts tfjs's stock webgpu kernels back. Idempotent; a no-op when nothing was replaced.
 *
 * @example
 * ```ts
 * import { unregisterFastKernels } from "./register.ts";
 * unregisterFastKernels();
 * ```
 */
export function unregisterFastKernels(): void {
  applied = null;
  unregisterSgdKernel();
  unregisterBatchNormKernels();
  unregisterSqueezeExciteKernels();
  unregisterRunningStatsKernel();
  unregisterGroupedConvKernels();
  uninstallDispatchCache();
  for (const name of FAST_KERNEL_NAMES) {
    const current = tf.getKernel(name, "webgpu");
    const original = stock.get(name);
    if (!isFast(current) || original === undefined) continue;
    tf.unregisterKernel(name, "webgpu");
    tf.registerKernel(original);
    stock.delete(name);
  }
}

/**
 * Every webgpu kernel of this toolkit registered now: the replacements of tfjs's own
 * ({@link FAST_KERNEL_NAMES}) and the toolkit's new ops (`own_kernels.ts`). Read from the
 * registry, so a kernel added to {@link registerFastKernels} is listed without further code
 * (the differential test, `tests/kernels_differential_test.ts`, enumerates them with this).
 *
 * @returns kernel names, the replacements first
 * @example
 * ```ts
 * import { registeredKernelNames } from "./register.ts";
 * console.log(Array.isArray(registeredKernelNames())); // true
 * ```
 */
export function registeredKernelNames(): string[] {
  return [...FAST_KERNEL_NAMES.filter(fastKernelRegistered), ...ownKernelNames()];
}

/**
 * The options of the {@link registerFastKernels} call in force (its profile resolved), so that
 * a caller that changes the registration (a test) can put it back; `null` after
 * {@link unregisterFastKernels} or before any registration.
 *
 * @returns a copy of the options, or `null`
 * @example
 * ```ts
 * import { fastKernelOptions, registerFastKernels, unregisterFastKernels } from "./register.ts";
 * registerFastKernels({ profile: "cpu" });
 * console.log(fastKernelOptions()?.profile); // "cpu"
 * unregisterFastKernels();
 * ```
 */
export function fastKernelOptions(): FastKernelOptions | null {
  return applied && { ...applied, split: { ...applied.split } };
}

/**
 * Whether the fast kernel for `name` is the one registered now.
 *
 * @param name a kernel name
 * @returns true when the fast kernel is registered for the webgpu backend
 * @example
 * ```ts
 * import { fastKernelRegistered } from "./register.ts";
 * console.log(fastKernelRegistered("Conv2D")); // false
 * ```
 */
export function fastKernelRegistered(name: string): boolean {
  return isFast(tf.getKernel(name, "webgpu"));
}

/**
 * The convolution policy in force (profile layout and split-K knobs), for tests and benchmarks.
 *
 * @returns a copy of the policy
 * @example
 * ```ts
 * import { currentConvPolicy } from "./register.ts";
 * console.log(currentConvPolicy().minChunk > 0); // true
 * ```
 */
export function currentConvPolicy(): SplitPolicy {
  return { ...policy };
}

export { fastConvLayoutStats, fastConvStats, resetFastConvStats } from "./conv_gemm.ts";
