/**
 * The toolkit's kernels for tfjs's own convolution ops on webgpu: `Conv2D`,
 * `Conv2DBackpropInput`, `Conv2DBackpropFilter` (implicit GEMMs, `conv_gemm.ts`), `FusedConv2D`
 * without bias/activation (the same GEMM) and `DepthwiseConv2dNativeBackpropFilter` (split
 * reduction, `depthwise_filter_grad.ts`). Model code does not change: every `tf.conv2d` (and its
 * gradients) and every depthwise filter gradient on the webgpu backend goes through them.
 * Configurations they do not cover (NCHW, dilation > 1, non-float32, a `dy` whose shape is not
 * the output shape the attributes give) go to tfjs's stock kernel, which computes them as tfjs
 * does. They take:
 *
 * - `Conv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter`: rank-4 NHWC float32 tensors,
 *   dilation 1, any stride and padding (`"same"`, `"valid"`, a number, explicit pairs) with any
 *   `dimRoundingMode`, and, for the gradients, a `dy` shaped `[batch, outH, outW, outC]` as the
 *   attributes give (not so after a `"round"`/`"ceil"` forward, whose gradient tfjs computes
 *   without the rounding mode, nor for a `tf.conv2dTranspose` with a mismatched output shape);
 *   within WebGPU's workgroup-count limits (`convGemmFits`).
 * - `FusedConv2D`: as `Conv2D`, without bias and with no (or a linear) activation.
 * - `DepthwiseConv2dNativeBackpropFilter`: rank-4 NHWC float32 `x` and a `dy` shaped as the
 *   attributes' output; any stride, padding, rounding mode and dilation.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../../deps.ts";
import { convGemmFits, type ConvInfo, type ConvOp, runConvGemm } from "./conv_gemm.ts";
import { runDepthwiseFilterGrad } from "./depthwise_filter_grad.ts";
import type { KernelEntry, TuningPolicies } from "./declare.ts";

/** The stock tfjs kernels these replace. */
export const CONV_KERNEL_NAMES = [
  "Conv2D",
  "Conv2DBackpropInput",
  "Conv2DBackpropFilter",
  "DepthwiseConv2dNativeBackpropFilter",
  "FusedConv2D",
] as const;
/** A kernel name these can replace. */
export type ConvKernelName = typeof CONV_KERNEL_NAMES[number];

type Attrs = {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat?: "NHWC" | "NCHW";
  dilations?: [number, number] | number;
  dimRoundingMode?: "floor" | "round" | "ceil";
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
};

/** The convolution facts for one call, or `null` when the GEMM kernels do not cover it. */
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
function depthwiseFilterGrad(policies: TuningPolicies, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const a = args.attrs as unknown as Attrs;
    if (
      x.dtype !== "float32" || dy.dtype !== "float32" || !a.filterShape ||
      x.shape.length !== 4 || dy.shape.length !== 4 || a.dataFormat === "NCHW"
    ) {
      return stock(args);
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
    if (!dyMatches(dy, info)) return stock(args);
    return runDepthwiseFilterGrad(args.backend as WebGPUBackend, info, x, dy, policies.depthwise);
  };
}

/** One of the three convolution GEMMs, or the stock kernel where it is not covered. */
function convGemm(op: ConvOp, policies: TuningPolicies, stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
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
    if (info === null || !convGemmFits(op, info, policies.conv)) return stock(args);
    return runConvGemm(backend, op, info, ins, policies.conv);
  };
}

/**
 * `FusedConv2D` (what `tf.layers.conv2d` calls) without bias and activation is a plain
 * convolution: the fast forward takes it; with a bias or an activation the stock kernel does.
 */
function fusedConv2D(policies: TuningPolicies, stock: tf.KernelFunc): tf.KernelFunc {
  const conv = convGemm("forward", policies, stock);
  return (args) => {
    const { bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | null>;
    const activation = (args.attrs as { activation?: string }).activation;
    const plain = bias == null && preluActivationWeights == null &&
      (activation == null || activation === "linear");
    return plain ? conv(args) : stock(args);
  };
}

/** The kernels of this file, for the registration list (`list.ts`). */
export const CONV_KERNELS: readonly KernelEntry[] = [
  {
    kernelName: "Conv2D",
    replacesStock: true,
    make: (policies, stock) => convGemm("forward", policies, stock!),
  },
  {
    kernelName: "Conv2DBackpropInput",
    replacesStock: true,
    make: (policies, stock) => convGemm("inputGrad", policies, stock!),
  },
  {
    kernelName: "Conv2DBackpropFilter",
    replacesStock: true,
    make: (policies, stock) => convGemm("filterGrad", policies, stock!),
  },
  {
    kernelName: "DepthwiseConv2dNativeBackpropFilter",
    replacesStock: true,
    make: (policies, stock) => depthwiseFilterGrad(policies, stock!),
  },
  {
    kernelName: "FusedConv2D",
    replacesStock: true,
    make: (policies, stock) => fusedConv2D(policies, stock!),
  },
];
