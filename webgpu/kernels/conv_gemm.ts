/**
 * The three 2-D convolution kernels (forward, input gradient, filter gradient) as implicit GEMMs
 * on {@link IMPLICIT_GEMM}, for NHWC activations and HWIO filters, dilation 1.
 *
 * | op | M (rows) | N (cols) | K (reduction) |
 * | --- | --- | --- | --- |
 * | Conv2D | batch·outH·outW | outC | kH·kW·inC |
 * | Conv2DBackpropInput | batch·inH·inW | inC | kH·kW·outC |
 * | Conv2DBackpropFilter | kH·kW·inC | outC | batch·outH·outW (split across workgroups) |
 *
 * All three write `C[M, N]` row-major, which is exactly the NHWC output, the NHWC input
 * gradient, or the HWIO filter gradient. The shapes all come from the {@link ConvInfo}: the
 * gradients read `dy` as `[batch, outH, outW, outC]`, so the caller (`conv.ts`) must hand
 * a `dy` of another shape (tfjs allows some) to tfjs's kernel instead.
 *
 * @module
 */
import type { tf, WebGPUBackend } from "../../deps.ts";
import { counters } from "../runtime/counters.ts";
import { MAX_WORKGROUPS_PER_DIM } from "./wgsl.ts";
import {
  chooseSplits,
  chooseTile,
  type GemmLayout,
  type GemmSpec,
  type GemmTile,
  gemmUniforms,
  makeGemmProgram,
  type OperandSpec,
  splitKReduce,
} from "./gemm_program.ts";

/** The shape facts of one convolution, as tfjs's `computeConv2DInfo` reports them. */
export type ConvInfo = tf.backend_util.Conv2DInfo;

/** Which of the three products to build. */
export type ConvOp = "forward" | "inputGrad" | "filterGrad";

/** Knobs of the convolution GEMMs: program layout and split-K policy. */
export interface SplitPolicy {
  /** Workgroups to aim for when the output alone gives fewer (default 1024). */
  targetWorkgroups: number;
  /** Shortest reduction chunk a split may get (default 256). */
  minChunk: number;
  /** GEMM program layout (`tiled` for GPUs, the default; `register` for CPU adapters). */
  layout?: GemmLayout;
}

/** The default policy: GPU-friendly tiles, 1024 workgroups. */
export const DEFAULT_SPLIT_POLICY: SplitPolicy = {
  targetWorkgroups: 1024,
  minChunk: 256,
  layout: "tiled",
};

/**
 * The policy of the `cpu` profile, for Deno's software adapters (llvmpipe, lavapipe; the rule is
 * `profileFor` of `install.ts`): register-blocked programs without
 * workgroup memory, and only enough splits to keep a few CPU threads busy (each split's
 * partial product costs a store and a reduction).
 */
export const CPU_SPLIT_POLICY: SplitPolicy = {
  targetWorkgroups: 32,
  minChunk: 256,
  layout: "register",
};

/** Output tiles of one split, in workgroups (fractional for the `register` layout). */
function tilesPerSplit(m: number, n: number, tile: GemmTile, layout: GemmLayout): number {
  const blocks = Math.ceil(m / tile.tm) * Math.ceil(n / tile.tn);
  return layout === "register" ? blocks / 64 : blocks;
}

/** Calls per GEMM convolution kernel (the `conv` counter group): proof the kernels ran. */
export const convGemmStats: Record<ConvOp | "depthwiseFilterGrad", number> = counters.group(
  "conv",
  { forward: 0, inputGrad: 0, filterGrad: 0, depthwiseFilterGrad: 0 },
);

/**
 * GEMM dispatches per program layout (the `convLayout` counter group): proof of which layout
 * (the adapter profile's) the convolutions ran on.
 */
export const convGemmLayoutStats: Record<GemmLayout, number> = counters.group("convLayout", {
  tiled: 0,
  register: 0,
});

/** WGSL statements that split `v` into `names` by the row-major extents `dims` (constants). */
function decompose(v: string, names: string[], dims: number[]): string {
  // names[i] ranges over dims[i]; the first name takes the quotient, so dims[0] is unused.
  const out: string[] = [];
  let rest = v;
  if (dims.some((d) => d <= 0)) throw new Error(`decompose: empty extent in [${dims}]`);
  for (let i = 0; i < names.length - 1; i++) {
    const inner = dims.slice(i + 1).reduce((a, b) => a * b, 1);
    if (inner === 1) {
      out.push(`let ${names[i]} = ${rest};`);
      rest = "0";
      continue;
    }
    out.push(`let ${names[i]} = ${rest} / ${inner};`);
    const r = `${names[i]}_r`;
    out.push(`let ${r} = ${rest} - ${names[i]} * ${inner};`);
    rest = r;
  }
  out.push(`let ${names[names.length - 1]} = ${rest};`);
  return out.join(" ");
}

/**
 * Builds the implicit-GEMM spec of one convolution product.
 *
 * @param op which product
 * @param c the convolution's shape facts (NHWC, dilation 1)
 * @param policy split-K knobs
 * @returns the spec, plus the reduction length and chunk for the uniforms
 */
export function convGemmSpec(
  op: ConvOp,
  c: ConvInfo,
  policy: SplitPolicy = DEFAULT_SPLIT_POLICY,
): { spec: GemmSpec; k: number; chunk: number; finalShape: number[] } {
  const B = c.batchSize, IH = c.inHeight, IW = c.inWidth, CI = c.inChannels;
  const OH = c.outHeight, OW = c.outWidth, CO = c.outChannels;
  const KH = c.filterHeight, KW = c.filterWidth, SH = c.strideHeight, SW = c.strideWidth;
  const PT = c.padInfo.top, PL = c.padInfo.left;
  let m: number, n: number, k: number, a: OperandSpec, b: OperandSpec, finalShape: number[];
  // Index of x[b, oh*SH - PT + kh, ow*SW - PL + kw, ci], -1 outside the image.
  const xAt = `
    let ih = oh * ${SH} - ${PT} + kh; let iw = ow * ${SW} - ${PL} + kw;
    if (ih < 0 || ih >= ${IH} || iw < 0 || iw >= ${IW}) { return -1; }
    return ((b * ${IH} + ih) * ${IW} + iw) * ${CI} + ci;`;
  if (op === "forward") {
    [m, n, k] = [B * OH * OW, CO, KH * KW * CI];
    a = {
      buffer: "x",
      index: `${decompose("m", ["b", "oh", "ow"], [B, OH, OW])}
        ${decompose("k", ["kh", "kw", "ci"], [KH, KW, CI])} ${xAt}`,
      contiguousInK: true,
      vec4: CI % 4 === 0,
    };
    b = { buffer: "W", index: `return k * ${CO} + n;`, contiguousInK: false, vec4: CO % 4 === 0 };
    finalShape = [B, OH, OW, CO];
  } else if (op === "inputGrad") {
    [m, n, k] = [B * IH * IW, CI, KH * KW * CO];
    // dx[b, ih, iw, ci] = Σ dy[b, oh, ow, co] · W[kh, kw, ci, co] over ih + PT - kh = oh*SH.
    const strideTest = (t: string, s: number, o: string) =>
      s === 1
        ? `let ${o} = ${t};`
        : `let ${o} = ${t} / ${s}; if (${o} * ${s} != ${t}) { return -1; }`;
    a = {
      buffer: "dy",
      index: `${decompose("m", ["b", "ih", "iw"], [B, IH, IW])}
        ${decompose("k", ["kh", "kw", "co"], [KH, KW, CO])}
        let th = ih + ${PT} - kh; let tw = iw + ${PL} - kw;
        if (th < 0 || tw < 0) { return -1; }
        ${strideTest("th", SH, "oh")} ${strideTest("tw", SW, "ow")}
        if (oh >= ${OH} || ow >= ${OW}) { return -1; }
        return ((b * ${OH} + oh) * ${OW} + ow) * ${CO} + co;`,
      contiguousInK: true,
      vec4: CO % 4 === 0,
    };
    b = {
      buffer: "W",
      index: `${decompose("k", ["khw", "co"], [KH * KW, CO])}
        return (khw * ${CI} + n) * ${CO} + co;`,
      contiguousInK: true,
      vec4: CO % 4 === 0,
    };
    finalShape = [B, IH, IW, CI];
  } else {
    [m, n, k] = [KH * KW * CI, CO, B * OH * OW];
    a = {
      buffer: "x",
      index: `${decompose("m", ["kh", "kw", "ci"], [KH, KW, CI])}
        ${decompose("k", ["b", "oh", "ow"], [B, OH, OW])} ${xAt}`,
      contiguousInK: false,
      vec4: CI % 4 === 0,
    };
    b = { buffer: "dy", index: `return k * ${CO} + n;`, contiguousInK: false, vec4: CO % 4 === 0 };
    finalShape = [KH, KW, CI, CO];
  }
  const layout = policy.layout ?? "tiled";
  const tile: GemmTile = chooseTile(m, n, layout, k);
  const tiles = tilesPerSplit(m, n, tile, layout);
  let splits = 1, chunk = Math.ceil(k / tile.tk) * tile.tk;
  if (tiles < policy.targetWorkgroups) {
    ({ splits, chunk } = chooseSplits(k, tiles, { ...policy, tk: tile.tk, mn: m * n }));
  }
  const spec: GemmSpec = {
    a,
    b,
    outputShape: splits > 1 ? [splits, m, n] : finalShape,
    splits,
    m,
    n,
    tile,
    layout,
  };
  return { spec, k, chunk, finalShape };
}

/**
 * The input gradient of a strided convolution, one stride phase at a time: phase `(rh, rw)`
 * holds the rows `ih ≡ rh - padTop (mod strideH)` (likewise for columns), which only the taps
 * `kh ≡ rh (mod strideH)` reach, so each phase is a dense GEMM over exactly its taps instead of
 * one GEMM whose `A` is mostly stride-gap zeros.
 *
 * @param c the convolution's shape facts (NHWC, dilation 1, a stride above 1)
 * @param rh row phase, `0 <= rh < strideHeight`
 * @param rw column phase, `0 <= rw < strideWidth`
 * @param layout GEMM program layout (`tiled` when absent)
 * @returns the spec and its reduction length, or `null` when the phase has no rows
 */
export function inputGradPhaseSpec(
  c: ConvInfo,
  rh: number,
  rw: number,
  layout: GemmLayout = "tiled",
): { spec: GemmSpec; k: number; chunk: number } | null {
  const B = c.batchSize, IH = c.inHeight, IW = c.inWidth, CI = c.inChannels;
  const OH = c.outHeight, OW = c.outWidth, CO = c.outChannels;
  const KH = c.filterHeight, KW = c.filterWidth, SH = c.strideHeight, SW = c.strideWidth;
  const PT = c.padInfo.top, PL = c.padInfo.left;
  const first = (r: number, p: number, s: number) => (((r - p) % s) + s) % s;
  const count = (start: number, size: number, s: number) =>
    start < size ? Math.ceil((size - start) / s) : 0;
  const ih0 = first(rh, PT, SH), iw0 = first(rw, PL, SW);
  const IHr = count(ih0, IH, SH), IWr = count(iw0, IW, SW);
  const KHr = count(rh, KH, SH), KWr = count(rw, KW, SW);
  // ih = ih0 + SH*i and kh = rh + SH*jh give oh = (ih + PT - kh) / SH = ch + i - jh.
  const ch = (ih0 + PT - rh) / SH, cw = (iw0 + PL - rw) / SW;
  const m = B * IHr * IWr, n = CI, k = KHr * KWr * CO;
  if (m === 0) return null;
  const tile = chooseTile(m, n, layout, k);
  // A phase that no tap reaches (a 1x1 filter's odd rows at stride 2) has an empty reduction:
  // its rows of dx are zero, and its operands read nothing (no index code to divide by a
  // zero extent, which Tint rejects).
  const aIndex = k === 0 ? "return -1;" : `${decompose("m", ["b", "i", "j"], [B, IHr, IWr])}
        ${decompose("k", ["jh", "jw", "co"], [KHr, KWr, CO])}
        let oh = ${ch} + i - jh; let ow = ${cw} + j - jw;
        if (oh < 0 || oh >= ${OH} || ow < 0 || ow >= ${OW}) { return -1; }
        return ((b * ${OH} + oh) * ${OW} + ow) * ${CO} + co;`;
  const bIndex = k === 0 ? "return -1;" : `${decompose("k", ["jh", "jw", "co"], [KHr, KWr, CO])}
        let kh = ${rh} + ${SH} * jh; let kw = ${rw} + ${SW} * jw;
        return ((kh * ${KW} + kw) * ${CI} + n) * ${CO} + co;`;
  const spec: GemmSpec = {
    a: { buffer: "dy", index: aIndex, contiguousInK: true, vec4: CO % 4 === 0 },
    b: { buffer: "W", index: bIndex, contiguousInK: true, vec4: CO % 4 === 0 },
    outRow: `${decompose("m", ["b", "i", "j"], [B, IHr, IWr])}
      return (b * ${IH} + ${ih0} + ${SH} * i) * ${IW} + ${iw0} + ${SW} * j;`,
    outputShape: [B, IH, IW, CI],
    splits: 1,
    m,
    n,
    tile,
    layout,
  };
  // An empty reduction still gets one (empty) chunk, so that no uniform divides by zero.
  return { spec, k, chunk: Math.max(1, Math.ceil(k / tile.tk)) * tile.tk };
}

/**
 * Whether the GEMM kernel's dispatch fits WebGPU's per-dimension workgroup limit (a batch of
 * several thousand 32x32 images would not); callers use the stock kernel otherwise.
 *
 * @param op which product
 * @param c shape facts (NHWC, dilation 1)
 * @param policy split-K knobs
 * @returns true when every dispatch dimension is within the limit
 */
export function convGemmFits(
  op: ConvOp,
  c: ConvInfo,
  policy: SplitPolicy = DEFAULT_SPLIT_POLICY,
): boolean {
  const rows = op === "forward"
    ? c.batchSize * c.outHeight * c.outWidth
    : op === "inputGrad"
    ? c.batchSize * c.inHeight * c.inWidth
    : c.filterHeight * c.filterWidth * c.inChannels;
  if (policy.layout === "register") {
    // A 2-D grid of 64-invocation workgroups: limited by 65535^2 workgroups only.
    const { spec } = convGemmSpec(op, c, policy);
    const groups = spec.splits * tilesPerSplit(spec.m, spec.n, spec.tile, "register");
    return Math.ceil(groups) <= MAX_WORKGROUPS_PER_DIM ** 2;
  }
  if (Math.ceil(rows / chooseTile(rows, c.outChannels).tm) > MAX_WORKGROUPS_PER_DIM) {
    return false;
  }
  if (op !== "filterGrad") return true;
  return convGemmSpec(op, c, policy).spec.splits <= MAX_WORKGROUPS_PER_DIM;
}

/**
 * Runs one convolution product on the webgpu backend: the GEMM, then (when split) the
 * reduction of the partial products. `inputs` are the `A` and `B` operands' tensors (`x, W`,
 * `dy, W` or `x, dy`); intermediate buffers are released.
 */
export function runConvGemm(
  backend: WebGPUBackend,
  op: ConvOp,
  c: ConvInfo,
  inputs: [tf.TensorInfo, tf.TensorInfo],
  policy: SplitPolicy = DEFAULT_SPLIT_POLICY,
): tf.TensorInfo {
  if (op === "inputGrad" && (c.strideHeight > 1 || c.strideWidth > 1)) {
    convGemmStats[op]++;
    let out: tf.TensorInfo | undefined;
    for (let rh = 0; rh < c.strideHeight; rh++) {
      for (let rw = 0; rw < c.strideWidth; rw++) {
        const phase = inputGradPhaseSpec(c, rh, rw, policy.layout);
        if (phase === null) continue;
        const { spec, k, chunk } = phase;
        convGemmLayoutStats[spec.layout]++;
        const uniforms = gemmUniforms(spec, k, chunk);
        out = backend.runWebGPUProgram(makeGemmProgram(spec), inputs, "float32", uniforms, out);
      }
    }
    return out!;
  }
  const { spec, k, chunk, finalShape } = convGemmSpec(op, c, policy);
  convGemmStats[op]++;
  convGemmLayoutStats[spec.layout]++;
  const uniforms = gemmUniforms(spec, k, chunk);
  const out = backend.runWebGPUProgram(makeGemmProgram(spec), inputs, "float32", uniforms);
  if (spec.splits === 1) return out;
  const reduce = splitKReduce(finalShape);
  const result = backend.runWebGPUProgram(reduce, [out], "float32", [
    { type: "int32", data: [spec.splits] },
  ]);
  backend.disposeData(out.dataId);
  return result;
}
