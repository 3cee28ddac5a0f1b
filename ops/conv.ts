/**
 * Convolution with PyTorch's semantics (symmetric padding, groups), and the grouped
 * convolution as one differentiable op, {@link GROUPED_CONV2D} (RegNetY's 3x3 convolutions with
 * group width 8): its name, attributes, shape facts and gradient. A backend may register
 * kernels for it (the WebGPU layer does: one dispatch forward, three backward); elsewhere
 * {@link conv2d} computes it exactly from one depthwise convolution and one sum.
 *
 * Input `x` is NHWC `[N, H, W, Cin]`, the filter `[KH, KW, Cin / G, Cout]` (HWIO with the input
 * axis holding one group's channels); attributes `stride`, `pad` (symmetric zero padding) and
 * `groups` (G). Output channel `g·go + o` reads only input channels `g·gi .. g·gi + gi - 1`
 * (`gi = Cin / G`, `go = Cout / G`):
 *
 * ```
 * y[b, oh, ow, g·go + o] =
 *   Σ_{kh, kw, i} x[b, oh·s − p + kh, ow·s − p + kw, g·gi + i] · W[kh, kw, i, g·go + o]
 * ```
 *
 * @module
 */
import { tf } from "../deps.ts";
import { kernelAccepts } from "./support.ts";

/** Name of the grouped convolution op. */
export const GROUPED_CONV2D = "GroupedConv2D";
/** Name of its input-gradient op (inputs `dy, filter`; attr `inputShape`). */
export const GROUPED_CONV2D_INPUT_GRAD = "GroupedConv2DBackpropInput";
/** Name of its filter-gradient op (inputs `x, dy`; attr `filterShape`). */
export const GROUPED_CONV2D_FILTER_GRAD = "GroupedConv2DBackpropFilter";

/** How a convolution is applied, as `torch.nn.Conv2d` takes it. */
export interface ConvSpec {
  /** Stride in both directions. */
  stride: number;
  /** Zero padding on every side (PyTorch's `padding=int`). */
  padding: number;
  /** Number of channel groups (1 = ordinary convolution). */
  groups: number;
}

/**
 * A 2-D convolution as `torch.nn.functional.conv2d` computes it, on NHWC input.
 *
 * @param x input `[N, H, W, C]`
 * @param kernel filter `[kh, kw, C / groups, out]` (PyTorch's `[out, C / groups, kh, kw]` transposed)
 * @param spec stride, symmetric padding and groups
 * @returns `[N, H', W', out]`
 */
export function conv2d(x: tf.Tensor4D, kernel: tf.Tensor4D, spec: ConvSpec): tf.Tensor4D {
  const pad = spec.padding === 0 ? "valid" : spec.padding;
  if (spec.groups === 1) return tf.conv2d(x, kernel, spec.stride, pad);
  return groupedConv2d(x, kernel, spec.stride, pad, spec.groups);
}

/**
 * Grouped convolution. Where the current backend has the grouped-convolution kernel
 * ({@link GROUPED_CONV2D}, registered for webgpu by `installWebGpu`), one op computes
 * it (one dispatch forward, three backward). Elsewhere it is exact from one depthwise
 * convolution and one sum: input channel `c` of group `g` is convolved with the `gi x go` block
 * of group `g` by a depthwise filter with channel multiplier `go`, then the `gi` partial outputs
 * of each group are summed.
 */
function groupedConv2d(
  x: tf.Tensor4D,
  kernel: tf.Tensor4D,
  stride: number,
  pad: "valid" | number,
  groups: number,
): tf.Tensor4D {
  const attrs = { stride, pad: pad === "valid" ? 0 : pad, groups };
  if (
    x.dtype === "float32" && kernel.dtype === "float32" &&
    kernelAccepts(GROUPED_CONV2D, [x.shape, kernel.shape], attrs)
  ) {
    return groupedConv(x, kernel, attrs);
  }
  return tf.tidy(() => {
    const [kh, kw, gi, out] = kernel.shape;
    const go = out / groups;
    // [kh, kw, gi, G, go] -> [kh, kw, G, gi, go] -> [kh, kw, G * gi, go]
    const depthwise = kernel.reshape([kh, kw, gi, groups, go]).transpose([0, 1, 3, 2, 4])
      .reshape([kh, kw, groups * gi, go]) as tf.Tensor4D;
    const y = tf.depthwiseConv2d(x, depthwise, stride, pad); // [N, H', W', G * gi * go]
    const [n, h, w] = y.shape;
    return y.reshape([n, h, w, groups, gi, go]).sum(4).reshape([n, h, w, out]) as tf.Tensor4D;
  });
}

/** Attributes of {@link GROUPED_CONV2D}. */
export interface GroupedConvAttrs {
  /** Stride in both directions. */
  stride: number;
  /** Zero padding on every side. */
  pad: number;
  /** Number of channel groups. */
  groups: number;
}

/** Shape facts of one grouped convolution. */
export interface GroupedConvInfo {
  /** Batch size. */
  batch: number;
  /** Input height. */
  inH: number;
  /** Input width. */
  inW: number;
  /** Input channels (all groups). */
  inC: number;
  /** Output height. */
  outH: number;
  /** Output width. */
  outW: number;
  /** Output channels (all groups). */
  outC: number;
  /** Filter height. */
  kh: number;
  /** Filter width. */
  kw: number;
  /** Stride. */
  stride: number;
  /** Symmetric padding. */
  pad: number;
  /** Number of groups. */
  groups: number;
  /** Input channels per group. */
  gi: number;
  /** Output channels per group. */
  go: number;
}

/**
 * The shape facts of a grouped convolution, validated.
 *
 * @param xShape input shape `[N, H, W, Cin]`
 * @param filterShape filter shape `[KH, KW, Cin / groups, Cout]`
 * @param attrs stride, padding and groups
 * @returns the shape facts
 * @throws Error when the shapes do not form a grouped convolution
 * @example
 * ```ts
 * import { groupedConvInfo } from "./conv.ts";
 * const c = groupedConvInfo([2, 9, 9, 16], [3, 3, 8, 16], { stride: 2, pad: 1, groups: 2 });
 * console.log(c.outH, c.go); // 5 8
 * ```
 */
export function groupedConvInfo(
  xShape: readonly number[],
  filterShape: readonly number[],
  attrs: GroupedConvAttrs,
): GroupedConvInfo {
  const { stride, pad, groups } = attrs;
  if (xShape.length !== 4 || filterShape.length !== 4) {
    throw new Error(
      `grouped conv: rank-4 input and filter expected, got ${xShape}, ${filterShape}`,
    );
  }
  const [batch, inH, inW, inC] = xShape;
  const [kh, kw, gi, outC] = filterShape;
  const ints = [stride, pad, groups].every((v) => Number.isInteger(v));
  if (!ints || stride < 1 || pad < 0 || groups < 1) {
    throw new Error(`grouped conv: bad stride ${stride}, pad ${pad} or groups ${groups}`);
  }
  if (inC !== gi * groups || outC % groups !== 0) {
    throw new Error(
      `grouped conv: ${inC} input and ${outC} output channels do not split into ${groups} ` +
        `groups of ${gi} inputs`,
    );
  }
  const outH = Math.floor((inH + 2 * pad - kh) / stride) + 1;
  const outW = Math.floor((inW + 2 * pad - kw) / stride) + 1;
  if (outH < 1 || outW < 1) throw new Error(`grouped conv: empty output for ${xShape}`);
  return {
    batch,
    inH,
    inW,
    inC,
    outH,
    outW,
    outC,
    kh,
    kw,
    stride,
    pad,
    groups,
    gi,
    go: outC / groups,
  };
}

tf.registerGradient({
  kernelName: GROUPED_CONV2D,
  inputsToSave: ["x", "filter"],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter] = saved;
    const a = attrs as unknown as GroupedConvAttrs;
    const plain = { stride: a.stride, pad: a.pad, groups: a.groups };
    return {
      x: () =>
        tf.engine().runKernel(
          GROUPED_CONV2D_INPUT_GRAD,
          { dy: dy as tf.Tensor, filter },
          { ...plain, inputShape: x.shape } as unknown as tf.NamedAttrMap,
        ) as tf.Tensor,
      filter: () =>
        tf.engine().runKernel(
          GROUPED_CONV2D_FILTER_GRAD,
          { x, dy: dy as tf.Tensor },
          { ...plain, filterShape: filter.shape } as unknown as tf.NamedAttrMap,
        ) as tf.Tensor,
    };
  },
});

/**
 * The grouped convolution as one differentiable op (its gradient runs the two gradient
 * kernels). Needs a backend with the kernels (`kernelAccepts(GROUPED_CONV2D, ...)`);
 * {@link conv2d} picks it or the composite.
 *
 * @param x input `[N, H, W, Cin]`, float32
 * @param filter filter `[KH, KW, Cin / groups, Cout]`, float32
 * @param attrs stride, symmetric padding and groups
 * @returns the output `[N, OH, OW, Cout]`
 * @example
 * ```ts ignore
 * const y = groupedConv(x, w, { stride: 1, pad: 1, groups: 6 });
 * ```
 */
export function groupedConv(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  attrs: GroupedConvAttrs,
): tf.Tensor4D {
  const plain = { stride: attrs.stride, pad: attrs.pad, groups: attrs.groups };
  return tf.engine().runKernel(
    GROUPED_CONV2D,
    { x, filter },
    plain as unknown as tf.NamedAttrMap,
  ) as tf.Tensor4D;
}
