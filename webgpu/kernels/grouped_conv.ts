/**
 * WebGPU kernels of the grouped 2-D convolution (`ops/conv.ts`'s `GroupedConv2D` and its two
 * gradient ops; the op's definition is there): one program for the forward pass and the input
 * gradient each, a split-K GEMM and its reduction for the filter gradient.
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
 * - Forward and input gradient: one invocation per output (or input) position and per chunk of
 *   a group's channels, accumulating `vec4`s in registers; the group's slice of the filter
 *   (`KH·KW·gi x chunk`) is staged once per workgroup in workgroup memory. One dispatch each.
 * - Filter gradient: a GEMM per group,
 *   `dW_g[KH·KW·gi, go] = patches_g[P, KH·KW·gi]ᵀ · dy_g[P, go]` over the `P = N·OH·OW`
 *   positions. Each workgroup takes one group (chunk of channels) and one chunk of positions
 *   (split-K), stages tiles of patches and of `dy` in workgroup memory, and writes its
 *   partial filter gradient; {@link splitKReduce} sums the partials. No
 *   invocation loops over the whole batch; no atomics, so results are deterministic.
 *
 * The kernels are registered from `list.ts` with their limits ({@link groupedConvSupported});
 * `ops/conv.ts` uses the op only where they take the call, and the depthwise formulation
 * elsewhere.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../../deps.ts";
import {
  GROUPED_CONV2D,
  GROUPED_CONV2D_FILTER_GRAD,
  GROUPED_CONV2D_INPUT_GRAD,
  type GroupedConvAttrs,
  type GroupedConvInfo,
  groupedConvInfo,
} from "../../ops/conv.ts";
import { counters } from "../runtime/counters.ts";
import { type KernelEntry, program, type ProgramKernel } from "./declare.ts";
import { chooseSplits, splitKReduce } from "./gemm_program.ts";
import { DEFAULT_SPLIT_POLICY, type SplitPolicy } from "./conv_gemm.ts";
import { MAX_WORKGROUPS_PER_DIM } from "./wgsl.ts";

type Info = tf.TensorInfo;

/** Invocations per workgroup of every program here. */
const WG = 64;
/** Floats of the filter slice the forward and input-gradient programs stage (8 KiB). */
const MAX_STAGED_FILTER = 2048;
/** Invocations of a filter-gradient workgroup at most. */
const MAX_FILTER_GRAD_THREADS = 256;
/** `vec4` accumulators of a filter-gradient invocation at most. */
const MAX_FILTER_GRAD_ACCS = 8;
/** Floats of the patch and `dy` tiles the filter-gradient program stages (12 KiB). */
const MAX_FILTER_GRAD_STAGE = 3072;

/** Kernel calls and WebGPU dispatches (the `groupedConv` counter group). */
const stats = counters.group("groupedConv", {
  forward: 0,
  inputGrad: 0,
  filterGrad: 0,
  dispatches: 0,
});

/** Channels of a group one forward/input-gradient invocation computes (a multiple of 4). */
function channelChunk(outPerGroup: number, reducePerGroup: number, taps: number): number {
  let chunk = Math.min(Math.ceil(outPerGroup / 4) * 4, 16);
  while (chunk > 4 && taps * reducePerGroup * chunk > MAX_STAGED_FILTER) chunk -= 4;
  return chunk;
}

/** The filter-gradient tiling (see {@link GROUPED_CONV_FILTER_GRAD}). */
interface FilterGradTiling {
  /** Invocations per workgroup (one filter row each, rows beyond it in further passes). */
  threads: number;
  /** Filter rows per invocation. */
  rowsPerThread: number;
  /** Output channels per workgroup (a multiple of 4). */
  chunk: number;
  /** Positions per staged tile. */
  tp: number;
}

function filterGradTiling(c: GroupedConvInfo): FilterGradTiling {
  const rows = c.kh * c.kw * c.gi;
  const threads = Math.min(MAX_FILTER_GRAD_THREADS, Math.ceil(rows / 8) * 8);
  const rowsPerThread = Math.ceil(rows / threads);
  let chunk = Math.min(Math.ceil(c.go / 4) * 4, 16);
  while (chunk > 4 && rowsPerThread * (chunk / 4) > MAX_FILTER_GRAD_ACCS) chunk -= 4;
  const tp = Math.max(1, Math.min(32, Math.floor(MAX_FILTER_GRAD_STAGE / (rows + chunk))));
  return { threads, rowsPerThread, chunk, tp };
}

/**
 * Whether the kernels of this module cover a convolution: the staged filter slices fit in
 * workgroup memory (`KH·KW·gi <= 512`, `KH·KW·go <= 512`) and every dispatch is within WebGPU's
 * limits. `ops/conv.ts` uses the depthwise formulation otherwise.
 *
 * @param c shape facts
 * @returns true when the grouped kernels can run it
 * @example
 * ```ts
 * import { groupedConvInfo } from "../../ops/conv.ts";
 * import { groupedConvSupported } from "./grouped_conv.ts";
 * const c = groupedConvInfo([1, 7, 7, 48], [3, 3, 8, 48], { stride: 1, pad: 1, groups: 6 });
 * console.log(groupedConvSupported(c)); // true
 * ```
 */
export function groupedConvSupported(c: GroupedConvInfo): boolean {
  const taps = c.kh * c.kw;
  if (taps * c.gi * 4 > MAX_STAGED_FILTER || taps * c.go * 4 > MAX_STAGED_FILTER) return false;
  const fwd = groupedConvSpec("forward", c), dx = groupedConvSpec("inputGrad", c);
  const fits = (d: [number, number, number]) => d.every((v) => v <= MAX_WORKGROUPS_PER_DIM);
  return fits(fwd.dispatch) && fits(dx.dispatch) &&
    c.groups * Math.ceil(c.go / filterGradTiling(c).chunk) <= MAX_WORKGROUPS_PER_DIM;
}

/** Which of the two position-parallel products to build. */
type PositionOp = "forward" | "inputGrad";

/** The layout of a forward or input-gradient program. */
interface PositionSpec {
  op: PositionOp;
  /** Positions computed (N·OH·OW or N·H·W). */
  positions: number;
  /** Output channels per group (go forward, gi for the input gradient). */
  outG: number;
  /** Reduction channels per group (gi forward, go for the input gradient). */
  redG: number;
  /** Channels per invocation (multiple of 4). */
  chunk: number;
  /** Chunks per group. */
  chunks: number;
  /** Workgroups along x (position tiles, folded into z past the limit). */
  dispatch: [number, number, number];
}

function groupedConvSpec(op: PositionOp, c: GroupedConvInfo): PositionSpec {
  const positions = op === "forward" ? c.batch * c.outH * c.outW : c.batch * c.inH * c.inW;
  const [outG, redG] = op === "forward" ? [c.go, c.gi] : [c.gi, c.go];
  const chunk = channelChunk(outG, redG, c.kh * c.kw);
  const chunks = Math.ceil(outG / chunk);
  const tiles = Math.ceil(positions / WG);
  const dx = Math.min(tiles, MAX_WORKGROUPS_PER_DIM);
  return {
    op,
    positions,
    outG,
    redG,
    chunk,
    chunks,
    dispatch: [dx, c.groups * chunks, Math.ceil(tiles / dx)],
  };
}

/**
 * The forward convolution (`op = "forward"`, inputs `x`, `W`) or its input gradient
 * (`op = "inputGrad"`, inputs `dy`, `W`): one invocation per position and channel chunk.
 */
const GROUPED_CONV_POSITIONS: ProgramKernel<PositionParams> = {
  name: "gconv_positions",
  shader: (p) => ({
    variableNames: p.s.op === "forward" ? ["x", "W"] : ["dy", "W"],
    variableComponents: [p.vecSrc ? 4 : 1, 1],
    workgroupSize: [WG, 1, 1],
    // Every binding must be used, or WebGPU's layout drops it.
    uniforms: "numPositions : i32,",
    code: () => positionCode(p),
  }),
};

/** What a forward or input-gradient program's WGSL depends on. */
interface PositionParams {
  /** Shape facts. */
  c: GroupedConvInfo;
  /** The layout over invocations. */
  s: PositionSpec;
  /** The source is read as `vec4` (its groups align to 4). */
  vecSrc: boolean;
}

/**
 * Runs the forward convolution (inputs `x`, `W`) or its input gradient (inputs `dy`, `W`): one
 * dispatch.
 */
function runPositions(
  backend: WebGPUBackend,
  op: PositionOp,
  c: GroupedConvInfo,
  inputs: [Info, Info],
): Info {
  const s = groupedConvSpec(op, c);
  const srcChannels = op === "forward" ? c.inC : c.outC;
  const vecSrc = s.redG % 4 === 0 && srcChannels % 4 === 0;
  const outputShape = op === "forward"
    ? [c.batch, c.outH, c.outW, c.outC]
    : [c.batch, c.inH, c.inW, c.inC];
  stats[op]++;
  stats.dispatches++;
  const prog = program(GROUPED_CONV_POSITIONS, { c, s, vecSrc }, {
    outputShape,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: s.dispatch,
  });
  return backend.runWebGPUProgram(prog, inputs, "float32", [
    { type: "int32", data: [s.positions] },
  ]);
}

/**
 * WGSL: stores the `vec4` `acc`, channels `4q..4q+3` of the invocation's chunk, at `result[at]`
 * on, those of them below `limit` (channels of a group). With one chunk per group, `o0` is 0
 * and which lanes are valid is known here.
 */
function storeLanes(at: string, acc: string, q: number, chunks: number, limit: number): string {
  return [0, 1, 2, 3].map((j) => {
    const lane = 4 * q + j;
    const store = `result[${at} + ${lane}] = ${acc}[${j}];`;
    if (chunks === 1) return lane < limit ? store : "";
    return `if (o0 + ${lane} < ${limit}) { ${store} }`;
  }).join(" ");
}

function positionCode(p: PositionParams): string {
  const { c, s } = p;
  const taps = c.kh * c.kw, q4 = s.chunk / 4;
  const staged = taps * s.redG * q4;
  const forward = s.op === "forward";
  const src = forward ? "x" : "dy";
  // The filter element for tap t, reduction channel rc, output channel oc (within the group).
  const wIndex = forward
    ? `(t * ${c.gi} + rc) * ${c.outC} + g * ${c.go} + oc`
    : `(t * ${c.gi} + oc) * ${c.outC} + g * ${c.go} + rc`;
  // Source pixel of tap (kh, kw) for this position, or `continue` when it is padding.
  const [posH, posW, srcH, srcW, srcC, outC] = forward
    ? [c.outH, c.outW, c.inH, c.inW, c.inC, c.outC]
    : [c.inH, c.inW, c.outH, c.outW, c.outC, c.inC];
  const locate = forward
    ? `let sh = ph * ${c.stride} - ${c.pad} + kh;
         let sw = pw * ${c.stride} - ${c.pad} + kw;
         if (sh < 0 || sh >= ${srcH} || sw < 0 || sw >= ${srcW}) { continue; }`
    : `let th = ph + ${c.pad} - kh; let tw = pw + ${c.pad} - kw;
         if (th < 0 || tw < 0) { continue; }
         let sh = th / ${c.stride}; let sw = tw / ${c.stride};
         if (sh * ${c.stride} != th || sw * ${c.stride} != tw) { continue; }
         if (sh >= ${srcH} || sw >= ${srcW}) { continue; }`;
  const accs = Array.from({ length: q4 }, (_, q) => q);
  const fmas = (v: string, wr: string) =>
    accs.map((q) => `acc${q} = fma(${v}, Ws[${wr} + ${q}], acc${q});`).join(" ");
  const accumulate = p.vecSrc
    ? `for (var r4 = 0; r4 < ${s.redG / 4}; r4++) {
           let v4 = ${src}[sbase / 4 + r4];
           let wr = wbase + r4 * ${4 * q4};
           ${
      ["x", "y", "z", "w"].map((lane, j) =>
        `{ let v = vec4<f32>(v4.${lane}); ${fmas("v", `wr + ${j * q4}`)} }`
      ).join("\n")
    }
         }`
    : `for (var rc = 0; rc < ${s.redG}; rc++) {
           let v = vec4<f32>(${src}[sbase + rc]);
           let wr = wbase + rc * ${q4};
           ${fmas("v", "wr")}
         }`;
  const stores = accs.map((q) => storeLanes("obase", `acc${q}`, q, s.chunks, s.outG)).join("\n");
  return `
      var<workgroup> Ws : array<vec4<f32>, ${staged}>;
      fn main() {
        let lid = i32(localIndex);
        let gy = i32(workgroupId.y);
        let g = gy / ${s.chunks};
        let o0 = (gy - g * ${s.chunks}) * ${s.chunk};
        for (var e = lid; e < ${staged}; e += ${WG}) {
          let q = e % ${q4};
          let trc = e / ${q4};
          let t = trc / ${s.redG};
          let rc = trc - t * ${s.redG};
          var v = vec4<f32>(0.0);
          for (var j = 0; j < 4; j++) {
            let oc = o0 + q * 4 + j;
            if (oc < ${s.outG}) { v[j] = W[${wIndex}]; }
          }
          Ws[e] = v;
        }
        workgroupBarrier();
        let pos = (i32(workgroupId.z) * ${s.dispatch[0]} + i32(workgroupId.x)) * ${WG} + lid;
        if (pos >= uniforms.numPositions) { return; }
        let b = pos / ${posH * posW};
        let prem = pos - b * ${posH * posW};
        let ph = prem / ${posW};
        let pw = prem - ph * ${posW};
        ${accs.map((q) => `var acc${q} = vec4<f32>(0.0);`).join(" ")}
        for (var kh = 0; kh < ${c.kh}; kh++) {
          for (var kw = 0; kw < ${c.kw}; kw++) {
            ${locate}
            let sbase = ((b * ${srcH} + sh) * ${srcW} + sw) * ${srcC} + g * ${s.redG};
            let wbase = (kh * ${c.kw} + kw) * ${s.redG * q4};
            ${accumulate}
          }
        }
        let obase = pos * ${outC} + g * ${s.outG} + o0;
        ${stores}
      }`;
}

/** The split-K layout of a filter gradient. */
interface FilterGradSpec extends FilterGradTiling {
  /** Positions reduced over (N·OH·OW). */
  positions: number;
  /** Rows of one group's filter gradient (KH·KW·gi). */
  rows: number;
  /** Chunks per group. */
  chunks: number;
  /** Number of position splits. */
  splits: number;
  /** Positions per split (a multiple of `tp`). */
  splitLen: number;
}

function filterGradSpec(c: GroupedConvInfo, policy: SplitPolicy): FilterGradSpec {
  const positions = c.batch * c.outH * c.outW;
  const rows = c.kh * c.kw * c.gi;
  const tiling = filterGradTiling(c);
  const { chunk, tp } = tiling;
  const chunks = Math.ceil(c.go / chunk);
  const { splits, chunk: splitLen } = chooseSplits(positions, c.groups * chunks, {
    ...policy,
    tk: tp,
    mn: rows * c.outC,
    maxSplits: MAX_WORKGROUPS_PER_DIM,
  });
  return { ...tiling, positions, rows, chunks, splits, splitLen };
}

/**
 * The partial filter gradients of one grouped convolution: workgroup `(0, g·chunks + k, s)`
 * computes channels `k·chunk ..` of group `g` over positions `s·splitLen ..`, and writes them
 * to slice `s` of `[splits, KH, KW, gi, Cout]` (the final `[KH, KW, gi, Cout]` when unsplit).
 * Per tile of `tp` positions, the workgroup stages the group's input patches
 * (`tp x KH·KW·gi`, one tap's `gi` contiguous channels per load) and the `dy` slice
 * (`tp x chunk`) in workgroup memory; invocation `t` owns filter row `t` (tap and input
 * channel) and all `chunk` output channels, as `vec4` accumulators.
 */
const GROUPED_CONV_FILTER_GRAD: ProgramKernel<FilterGradParams> = {
  name: "gconv_filter_grad",
  shader: (p) => ({
    variableNames: ["x", "dy"],
    variableComponents: [p.vecX ? 4 : 1, p.vecDy ? 4 : 1],
    workgroupSize: [p.s.threads, 1, 1],
    uniforms: "numPositions : i32,",
    code: () => filterGradCode(p),
  }),
};

/** What a filter-gradient program's WGSL depends on. */
interface FilterGradParams {
  /** Shape facts. */
  c: GroupedConvInfo;
  /** The split-K layout. */
  s: FilterGradSpec;
  /** `x` read as `vec4`. */
  vecX: boolean;
  /** `dy` read as `vec4`. */
  vecDy: boolean;
}

/**
 * The partial-sum program of one convolution's filter gradient.
 *
 * @param c shape facts
 * @param policy split knobs
 * @returns the program and its number of position splits (partial slices in the output)
 */
export function groupedConvFilterGrad(
  c: GroupedConvInfo,
  policy: SplitPolicy = DEFAULT_SPLIT_POLICY,
) {
  const s = filterGradSpec(c, policy);
  const vecX = c.gi % 4 === 0 && c.inC % 4 === 0;
  const vecDy = c.go % 4 === 0 && c.outC % 4 === 0;
  const filter = [c.kh, c.kw, c.gi, c.outC];
  return {
    program: program(GROUPED_CONV_FILTER_GRAD, { c, s, vecX, vecDy }, {
      outputShape: s.splits > 1 ? [s.splits, ...filter] : filter,
      dispatchLayout: { x: [0], y: [1], z: [2] },
      dispatch: [1, c.groups * s.chunks, s.splits],
    }),
    splits: s.splits,
  };
}

function filterGradCode(p: FilterGradParams): string {
  const { c, s } = p;
  const T = s.threads, Q = s.chunk / 4, taps = c.kh * c.kw;
  const ohw = c.outH * c.outW;
  const ks = Array.from({ length: s.rowsPerThread }, (_, k) => k);
  const qs = Array.from({ length: Q }, (_, q) => q);
  const loadX = p.vecX
    ? `for (var i4 = 0; i4 < ${c.gi / 4}; i4++) {
           var v = vec4<f32>(0.0);
           if (src >= 0) { v = x[src / 4 + i4]; }
           let d = dst + i4 * 4;
           Xs[d] = v.x; Xs[d + 1] = v.y; Xs[d + 2] = v.z; Xs[d + 3] = v.w;
         }`
    : `for (var i = 0; i < ${c.gi}; i++) {
           var v = 0.0;
           if (src >= 0) { v = x[src + i]; }
           Xs[dst + i] = v;
         }`;
  const loadDy = p.vecDy
    ? `if (o0 + q * 4 < ${c.go}) { v = dy[base / 4]; }`
    : `for (var j = 0; j < 4; j++) {
           if (o0 + q * 4 + j < ${c.go}) { v[j] = dy[base + j]; }
         }`;
  const stores = ks.map((k) =>
    `if (lid + ${k * T} < ${s.rows}) {
        let out = obase + row${k} * ${c.outC};
        ${qs.map((q) => storeLanes("out", `acc${k}_${q}`, q, s.chunks, c.go)).join("\n")}
      }`
  ).join("\n");
  return `
      var<workgroup> Xs : array<f32, ${s.tp * s.rows}>;
      var<workgroup> Ds : array<vec4<f32>, ${s.tp * Q}>;
      fn main() {
        let lid = i32(localIndex);
        let gy = i32(workgroupId.y);
        let g = gy / ${s.chunks};
        let o0 = (gy - g * ${s.chunks}) * ${s.chunk};
        let split = i32(workgroupId.z);
        let pBegin = split * ${s.splitLen};
        let pEnd = min(uniforms.numPositions, pBegin + ${s.splitLen});
        ${
    ks.map((k) =>
      `let row${k} = min(lid + ${k * T}, ${s.rows - 1});
         ${qs.map((q) => `var acc${k}_${q} = vec4<f32>(0.0);`).join(" ")}`
    ).join("\n")
  }
        // A tile count fixed at build time: the loop holds barriers, so its bounds must be the
        // same for the whole workgroup to the compiler's eye (Tint rejects pEnd here); the last
        // split's tiles beyond pEnd stage zeros and skip their products.
        for (var pt = 0; pt < ${s.splitLen / s.tp}; pt++) {
          let p0 = pBegin + pt * ${s.tp};
          for (var e = lid; e < ${s.tp * taps}; e += ${T}) {
            let p = e / ${taps};
            let t = e - p * ${taps};
            let pos = p0 + p;
            let dst = p * ${s.rows} + t * ${c.gi};
            var src = -1;
            if (pos < pEnd) {
              let b = pos / ${ohw};
              let prem = pos - b * ${ohw};
              let oh = prem / ${c.outW};
              let ow = prem - oh * ${c.outW};
              let kh = t / ${c.kw};
              let kw = t - kh * ${c.kw};
              let ih = oh * ${c.stride} - ${c.pad} + kh;
              let iw = ow * ${c.stride} - ${c.pad} + kw;
              if (ih >= 0 && ih < ${c.inH} && iw >= 0 && iw < ${c.inW}) {
                src = ((b * ${c.inH} + ih) * ${c.inW} + iw) * ${c.inC} + g * ${c.gi};
              }
            }
            ${loadX}
          }
          for (var e = lid; e < ${s.tp * Q}; e += ${T}) {
            let p = e / ${Q};
            let q = e - p * ${Q};
            let pos = p0 + p;
            var v = vec4<f32>(0.0);
            if (pos < pEnd) {
              let base = pos * ${c.outC} + g * ${c.go} + o0 + q * 4;
              ${loadDy}
            }
            Ds[e] = v;
          }
          workgroupBarrier();
          for (var p = 0; p < min(${s.tp}, pEnd - p0); p++) {
            ${
    ks.map((k) =>
      `{ let xv = vec4<f32>(Xs[p * ${s.rows} + row${k}]);
           ${
        qs.map((q) => `acc${k}_${q} = fma(xv, Ds[p * ${Q} + ${q}], acc${k}_${q});`).join(" ")
      } }`
    ).join("\n")
  }
          }
          workgroupBarrier();
        }
        let obase = split * ${s.rows * c.outC} + g * ${c.go} + o0;
        ${stores}
      }`;
}

/**
 * Runs the filter gradient: the split partial products, then (when split) their sum.
 * Intermediate buffers are released.
 */
function runFilterGrad(
  backend: WebGPUBackend,
  c: GroupedConvInfo,
  x: Info,
  dy: Info,
  policy: SplitPolicy,
): Info {
  const { program, splits } = groupedConvFilterGrad(c, policy);
  stats.filterGrad++;
  stats.dispatches++;
  const partial = backend.runWebGPUProgram(program, [x, dy], "float32", [
    { type: "int32", data: [c.batch * c.outH * c.outW] },
  ]);
  if (splits === 1) return partial;
  stats.dispatches++;
  const out = backend.runWebGPUProgram(
    splitKReduce([c.kh, c.kw, c.gi, c.outC]),
    [partial],
    "float32",
    [{ type: "int32", data: [splits] }],
  );
  backend.disposeData(partial.dataId);
  return out;
}

/** Checks float32 inputs and the shape facts; the kernels throw on anything else. */
function checkedInfo(
  xShape: readonly number[],
  filterShape: readonly number[],
  attrs: GroupedConvAttrs,
  inputs: Info[],
): GroupedConvInfo {
  if (inputs.some((t) => t.dtype !== "float32")) {
    throw new Error("grouped conv: float32 tensors expected");
  }
  const c = groupedConvInfo(xShape, filterShape, attrs);
  if (!groupedConvSupported(c)) {
    throw new Error(`grouped conv: shape ${xShape} / ${filterShape} is beyond the webgpu kernel`);
  }
  return c;
}

/** The shape facts, once `dy` is checked to be shaped as the output; throws otherwise. */
function checkedDy(c: GroupedConvInfo, dy: Info): GroupedConvInfo {
  const out = [c.batch, c.outH, c.outW, c.outC];
  if (!tf.util.arraysEqual(dy.shape, out)) {
    throw new Error(`grouped conv: dy [${dy.shape}] is not the output shape [${out}]`);
  }
  return c;
}

/** Whether the kernels take a call (`ops/support.ts`'s limits). */
function takes(shapes: readonly (readonly number[])[], attrs: unknown): boolean {
  try {
    return groupedConvSupported(groupedConvInfo(shapes[0], shapes[1], attrs as GroupedConvAttrs));
  } catch {
    return false;
  }
}

/**
 * The kernels of this file, for the registration list (`list.ts`). They take float32 NHWC
 * tensors of the shapes `groupedConvInfo` accepts, within {@link groupedConvSupported}'s limits,
 * and a `dy` shaped as the output (the output size rounds down, as PyTorch's does: there is no
 * rounding-mode attribute); anything else throws (there is no stock kernel to hand it to;
 * `ops/conv.ts` asks `kernelAccepts` and uses the depthwise formulation where it is false).
 */
export const GROUPED_CONV_KERNELS: readonly KernelEntry[] = [
  {
    kernelName: GROUPED_CONV2D,
    limits: takes,
    make: () => (args) => {
      const { x, filter } = args.inputs as { x: Info; filter: Info };
      const a = args.attrs as unknown as GroupedConvAttrs;
      const c = checkedInfo(x.shape, filter.shape, a, [x, filter]);
      return runPositions(args.backend as WebGPUBackend, "forward", c, [x, filter]);
    },
  },
  {
    kernelName: GROUPED_CONV2D_INPUT_GRAD,
    make: () => (args) => {
      const { dy, filter } = args.inputs as { dy: Info; filter: Info };
      const a = args.attrs as unknown as GroupedConvAttrs & { inputShape: number[] };
      const c = checkedDy(checkedInfo(a.inputShape, filter.shape, a, [dy, filter]), dy);
      return runPositions(args.backend as WebGPUBackend, "inputGrad", c, [dy, filter]);
    },
  },
  {
    kernelName: GROUPED_CONV2D_FILTER_GRAD,
    make: (policies) => (args) => {
      const { x, dy } = args.inputs as { x: Info; dy: Info };
      const a = args.attrs as unknown as GroupedConvAttrs & { filterShape: number[] };
      const c = checkedDy(checkedInfo(x.shape, a.filterShape, a, [x, dy]), dy);
      return runFilterGrad(args.backend as WebGPUBackend, c, x, dy, policies.grouped);
    },
  },
];
