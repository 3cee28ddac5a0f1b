/**
 * WebGPU kernels of the fused training-mode batch normalization (`ops/batchnorm.ts`'s
 * `FusedBatchNormTraining` and `FusedBatchNormTrainingGrad`; the op, its dispatch table and its numerics are
 * described there): the per-chunk passes and the forward's elementwise pass are tfjs programs,
 * the merges and the backward's `dx` pass (two outputs each) direct kernels.
 *
 * @module
 */
import type { tf, WebGPUBackend } from "../../deps.ts";
import {
  FUSED_BATCH_NORM,
  FUSED_BATCH_NORM_GRAD,
  type FusedBatchNormAttrs,
} from "../../ops/batchnorm.ts";
import {
  type DirectKernel,
  runDirect,
  type StorageBinding,
  uninitialized,
} from "../runtime/direct.ts";
import { counters } from "../runtime/counters.ts";
import type { ProgramUniforms } from "../runtime/tfjs.ts";
import { type KernelEntry, program, type ProgramKernel } from "./declare.ts";
import { flatGrid, flatMain, read, write } from "./wgsl.ts";

/** Calls of the fused kernels (the `fusedBatchNorm` counter group): proof they ran. */
const stats = counters.group("fusedBatchNorm", { forward: 0, backward: 0 });

/** Per-chunk passes by lane width (the `fusedBatchNormLanes` group): `vec4` or scalar. */
const laneStats = counters.group("fusedBatchNormLanes", { vec4: 0, scalar: 0 });

/** Workgroups the per-chunk pass aims for (channel tiles times chunks). */
const TARGET_WORKGROUPS = 256;
/** Invocations per workgroup of the per-chunk pass. */
const THREADS = 256;
/** Rows of the gradient's chunk table after the `2S` partial rows (see `CHUNK_PASS`). */
const GRAD_EXTRA_ROWS = 6;

/** How the rows are cut into chunks and the channels into tiles. */
export interface BatchNormPlan {
  /** Rows `M` (values per channel). */
  rows: number;
  /**
   * Channel lanes: `C`, or `C / 4` when `C` is a multiple of 4 and the per-chunk pass reads
   * `vec4`s (see {@link BatchNormPlan.vec}).
   */
  channels: number;
  /** Channels per lane of the per-chunk pass: 4 (`vec4` loads) or 1. */
  vec: number;
  /** Channel lanes per workgroup (a power of two, at most 64; a quarter of it for `vec4`). */
  tileC: number;
  /** Row lanes per workgroup (`256 / tileC` of the scalar plan). */
  tileR: number;
  /** Number of row chunks. */
  splits: number;
  /** Rows per chunk (the last may be shorter). */
  chunk: number;
}

/**
 * Cuts `rows x channels` into channel tiles and row chunks: about 256 workgroups in all, each
 * lane of a chunk reading at least 4 rows. The plan reads one channel per lane (`vec` 1).
 *
 * @param rows values per channel (`N * H * W`)
 * @param channels channels
 * @returns the plan
 * @example
 * ```ts
 * import { planBatchNorm } from "./batchnorm.ts";
 * const p = planBatchNorm(65536, 16);
 * console.log(p.tileC, p.splits, p.chunk); // 16 256 256
 * ```
 */
export function planBatchNorm(rows: number, channels: number): BatchNormPlan {
  let tileC = 1;
  while (tileC < channels && tileC < 64) tileC *= 2;
  const tileR = THREADS / tileC;
  const tiles = Math.ceil(channels / tileC);
  let splits = Math.min(
    Math.ceil(TARGET_WORKGROUPS / tiles),
    Math.max(1, Math.floor(rows / (tileR * 4))),
  );
  splits = Math.max(1, splits);
  const chunk = Math.max(1, Math.ceil(rows / splits));
  splits = Math.max(1, Math.ceil(rows / chunk));
  return { rows, channels, vec: 1, tileC, tileR, splits, chunk };
}

function planUniforms(p: BatchNormPlan, epsilon: number): ProgramUniforms {
  return [
    { type: "int32", data: [p.rows] },
    { type: "int32", data: [p.chunk] },
    { type: "int32", data: [p.splits] },
    { type: "float32", data: [epsilon] },
  ];
}

const PLAN_UNIFORMS = "rows : i32, chunk : i32, splits : i32, eps : f32,";

/**
 * Per-chunk pass. `stats`: writes rows `2s` (chunk mean) and `2s + 1` (chunk centred sum of
 * squares) of a `[2S, C]` table. `grad`: writes `Σ g` and `Σ g (x - mean)` per chunk, and
 * after the `2S` partial rows four rows `mean, gamma, dmean, dvar` (copied by chunk 0) so that
 * the `dx` pass needs few bindings; two more rows are left for the merge (`dbeta`, `dgamma`).
 */
/** What the per-chunk pass's WGSL depends on. */
interface ChunkPassParams {
  mode: "stats" | "grad";
  /** ReLU mask (the gradient only). */
  relu: boolean;
  channels: number;
  tileC: number;
  tileR: number;
  vec: number;
}

const CHUNK_PASS: ProgramKernel<ChunkPassParams> = {
  name: "bn_chunk",
  shader: (p) => {
    const variableNames = p.mode === "stats"
      ? ["x"]
      : ["dy", "x", "mean", "gamma", "dmean", "dvar", ...(p.relu ? ["y"] : [])];
    return {
      variableNames,
      variableComponents: variableNames.map(() => p.vec),
      outputComponent: p.vec,
      workgroupSize: [p.tileC, p.tileR, 1],
      uniforms: PLAN_UNIFORMS,
      code: () => chunkPassCode(p),
    };
  },
};

/** A per-chunk pass over a plan. */
function chunkPass(mode: "stats" | "grad", plan: BatchNormPlan, relu: boolean) {
  const { channels, tileC, tileR, vec } = plan;
  const params = { mode, relu: relu && mode === "grad", channels, tileC, tileR, vec };
  const rows = 2 * plan.splits + (mode === "grad" ? GRAD_EXTRA_ROWS : 0);
  return program(CHUNK_PASS, params, {
    outputShape: [rows, plan.channels * plan.vec],
    dispatchLayout: { x: [1], y: [0] },
    dispatch: [Math.ceil(plan.channels / plan.tileC), plan.splits, 1],
  });
}

function chunkPassCode(p: ChunkPassParams): string {
  const { channels: C, tileC: TC, tileR: TR, vec } = p;
  const T = vec === 4 ? "vec4<f32>" : "f32";
  const zero = `${T}(0.0)`;
  const reduce = `
      fn reduceLanes(tc : i32, tr : i32) {
        for (var st = ${TR / 2}; st > 0; st = st / 2) {
          if (tr < st) {
            red0[tr * ${TC} + tc] = red0[tr * ${TC} + tc] + red0[(tr + st) * ${TC} + tc];
            red1[tr * ${TC} + tc] = red1[tr * ${TC} + tc] + red1[(tr + st) * ${TC} + tc];
          }
          workgroupBarrier();
        }
      }`;
  const head = `
      let tc = i32(localId.x);
      let tr = i32(localId.y);
      let c = i32(workgroupId.x) * ${TC} + tc;
      let cc = min(c, ${C - 1});
      let s = i32(workgroupId.y);
      let r0 = s * uniforms.chunk;
      let r1 = min(uniforms.rows, r0 + uniforms.chunk);
      let slot = tr * ${TC} + tc;`;
  let body: string;
  if (p.mode === "stats") {
    body = `${head}
      let n = f32(r1 - r0);
      var a = ${zero};
      for (var r = r0 + tr; r < r1; r = r + ${TR}) { a = a + x[r * ${C} + cc]; }
      red0[slot] = a;
      red1[slot] = ${zero};
      workgroupBarrier();
      reduceLanes(tc, tr);
      let m0 = red0[tc] / n;
      workgroupBarrier();
      var d1 = ${zero};
      var d2 = ${zero};
      for (var r = r0 + tr; r < r1; r = r + ${TR}) {
        let d = x[r * ${C} + cc] - m0;
        d1 = d1 + d;
        d2 = fma(d, d, d2);
      }
      red0[slot] = d1;
      red1[slot] = d2;
      workgroupBarrier();
      reduceLanes(tc, tr);
      if (tr == 0 && c < ${C}) {
        let s1 = red0[tc];
        result[(2 * s) * ${C} + c] = m0 + s1 / n;
        result[(2 * s + 1) * ${C} + c] = max(red1[tc] - s1 * s1 / n, ${zero});
      }`;
  } else {
    const mask = p.relu ? `g = select(g, ${zero}, y[i] <= ${zero});` : "";
    body = `${head}
      let mu = mean[cc];
      var a = ${zero};
      var b = ${zero};
      for (var r = r0 + tr; r < r1; r = r + ${TR}) {
        let i = r * ${C} + cc;
        var g = dy[i];
        ${mask}
        a = a + g;
        b = fma(g, x[i] - mu, b);
      }
      red0[slot] = a;
      red1[slot] = b;
      workgroupBarrier();
      reduceLanes(tc, tr);
      if (tr == 0 && c < ${C}) {
        result[(2 * s) * ${C} + c] = red0[tc];
        result[(2 * s + 1) * ${C} + c] = red1[tc];
        if (s == 0) {
          let t = 2 * uniforms.splits * ${C} + c;
          result[t] = mu;
          result[t + ${C}] = gamma[c];
          result[t + ${2 * C}] = dmean[c];
          result[t + ${3 * C}] = dvar[c];
        }
      }`;
  }
  return `
      var<workgroup> red0 : array<${T}, ${TC * TR}>;
      var<workgroup> red1 : array<${T}, ${TC * TR}>;
      ${reduce}
      fn main() {
        ${body}
      }`;
}

/** The plan as a uniform block (WGSL struct `Plan`): rows, chunk, splits, eps, size, padding. */
function planBytes(p: BatchNormPlan, epsilon: number, size = 0): ArrayBuffer {
  const bytes = new ArrayBuffer(32);
  const i32 = new Int32Array(bytes), f32 = new Float32Array(bytes);
  i32[0] = p.rows;
  i32[1] = p.chunk;
  i32[2] = p.splits;
  f32[3] = epsilon;
  i32[4] = size;
  return bytes;
}

/** WGSL: the `Plan` uniform block after `n` storage bindings. */
const planDecl = (n: number) =>
  `struct Plan { rows : i32, chunk : i32, splits : i32, eps : f32, size : i32,
  pad0 : i32, pad1 : i32, pad2 : i32, }
@group(0) @binding(${n}) var<uniform> uniforms : Plan;`;

/** Rows `r0..r1` of the chunk `s` as an f32 count (WGSL expression). */
const CHUNK_COUNT = `f32(min(uniforms.rows, (s + 1) * uniforms.chunk) - s * uniforms.chunk)`;

/** The storage bindings of the merge of a pass. */
function mergeStorage(what: "stats" | "grad"): StorageBinding[] {
  return what === "stats"
    ? [read("part"), write("mean"), write("variance")]
    : [write("part"), read("variance"), write("dbeta"), write("dgamma")];
}

/**
 * WGSL of the per-channel merge of the chunk table, one invocation per channel, both outputs
 * of a pass in one dispatch. `stats`: `mean` (chunk means merged, Chan et al.) and `variance`
 * (`Σ M2_s + n_s (mean_s - mean)²` over `M`). `grad`: `dbeta = Σ g` and `dgamma = Σ g x̂`, also
 * copied into rows `2S + 4` and `2S + 5` of the table for the `dx` pass.
 */
function mergeCode(what: "stats" | "grad", channels: number): string {
  const C = channels;
  const body = what === "stats"
    ? `
      let m0 = part[c];
      var acc = 0.0;
      for (var s = 0; s < uniforms.splits; s = s + 1) {
        acc = acc + ${CHUNK_COUNT} * (part[(2 * s) * ${C} + c] - m0);
      }
      let mu = m0 + acc / f32(uniforms.rows);
      mean[c] = mu;
      var m2 = 0.0;
      for (var s = 0; s < uniforms.splits; s = s + 1) {
        let d = part[(2 * s) * ${C} + c] - mu;
        m2 = m2 + part[(2 * s + 1) * ${C} + c] + ${CHUNK_COUNT} * d * d;
      }
      variance[c] = m2 / f32(uniforms.rows);`
    : `
      var acc = 0.0;
      for (var s = 0; s < uniforms.splits; s = s + 1) {
        acc = acc + part[(2 * s) * ${C} + c];
      }
      dbeta[c] = acc;
      var acc1 = 0.0;
      for (var s = 0; s < uniforms.splits; s = s + 1) {
        acc1 = acc1 + part[(2 * s + 1) * ${C} + c];
      }
      let dg = acc1 * inverseSqrt(variance[c] + uniforms.eps);
      dgamma[c] = dg;
      let t = (2 * uniforms.splits + 4) * ${C} + c;
      part[t] = acc;
      part[t + ${C}] = dg;`;
  return `${planDecl(mergeStorage(what).length)}
    @compute @workgroup_size(64)
    fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
      let c = i32(gid.x);
      if (c >= ${C}) {
        return;
      }
      ${body}
    }`;
}

/** The lane width of the elementwise passes: `vec4` when the channels come in fours. */
function elementVec(channels: number): number {
  return channels % 4 === 0 ? 4 : 1;
}

/** The storage bindings of the `dx` pass (`y` after ReLU, `dshortcut` with a residual). */
function dxStorage(p: DxParams): StorageBinding[] {
  const T = elementVec(p.channels) === 4 ? "vec4<f32>" : "f32";
  return [
    ...["dy", "x", "part", "variance", ...(p.relu ? ["y"] : [])].map((n) => read(n, T)),
    write("dx", T),
    ...(p.residual ? [write("dshortcut", T)] : []),
  ];
}

/** What the `dx` pass's WGSL depends on. */
type DxParams = { channels: number; relu: boolean; residual: boolean };

/**
 * WGSL of the `dx` pass: `dx` from the chunk table (`mean, gamma, dmean, dvar, dbeta, dgamma`
 * rows after the partials), `variance`, `dy` (masked by `y > 0` after ReLU) and `x`; with a
 * residual input, also its gradient (the masked `dy`) in the same dispatch.
 */
function dxCode(p: DxParams): string {
  const { channels, relu, residual } = p;
  const vec = elementVec(channels);
  const T = vec === 4 ? "vec4<f32>" : "f32";
  const CK = channels / vec;
  return `${planDecl(dxStorage(p).length)}
    ${flatMain()}
      if (index >= uniforms.size) {
        return;
      }
      let c = index % ${CK};
      let t = 2 * uniforms.splits * ${CK} + c;
      let mu = part[t];
      let gam = part[t + ${CK}];
      let dmu = part[t + ${2 * CK}];
      let dvr = part[t + ${3 * CK}];
      let db = part[t + ${4 * CK}];
      let dg = part[t + ${5 * CK}];
      let rinv = 1.0 / f32(uniforms.rows);
      let invstd = inverseSqrt(variance[c] + ${T}(uniforms.eps));
      let xc = x[index] - mu;
      var g = dy[index];
      ${relu ? `g = select(${T}(0.0), g, y[index] > ${T}(0.0));` : ""}
      let a = gam * invstd;
      let v = a * (g - db * rinv - xc * invstd * dg * rinv) + (dmu + 2.0 * dvr * xc) * rinv;
      dx[index] = v;
      ${residual ? "dshortcut[index] = g;" : ""}
    }`;
}

/** The per-channel merge of the chunk table (both outputs of a pass in one dispatch). */
const MERGE: DirectKernel<{ what: "stats" | "grad"; channels: number }> = {
  name: "bn_merge",
  storage: (p) => mergeStorage(p.what),
  code: (p) => mergeCode(p.what, p.channels),
};

/** The backward's `dx` pass (and the residual's gradient). */
const DX: DirectKernel<DxParams> = { name: "bn_dx", storage: dxStorage, code: dxCode };

/**
 * The forward's elementwise pass: `y = (x - mean) γ / sqrt(var + eps) + β`, rounded to f32,
 * then `+ shortcut` with a residual input, then the activation (the ReLU after a residual as
 * tfjs's `Relu` computes it, so that the fused op equals `relu(add(bn(x), shortcut))` bit for bit).
 */
/** What the elementwise pass's WGSL depends on. */
interface ElementwiseParams {
  relu: boolean;
  residual: boolean;
  channels: number;
  vec: number;
}

const ELEMENTWISE: ProgramKernel<ElementwiseParams> = {
  name: "bn_y",
  shader: (p) => {
    const variableNames = ["x", "mean", "variance", "gamma", "beta"];
    if (p.residual) variableNames.push("shortcut");
    return {
      variableNames,
      variableComponents: variableNames.map(() => p.vec),
      outputComponent: p.vec,
      workgroupSize: [64, 1, 1],
      size: true,
      uniforms: PLAN_UNIFORMS,
      code: () => elementwiseCode(p),
    };
  },
};

/** The elementwise pass for an output of this shape. */
function elementwise(shape: number[], relu: boolean, residual: boolean) {
  const channels = shape[shape.length - 1];
  const vec = elementVec(channels);
  const size = shape.reduce((a, b) => a * b, 1) / vec;
  return program(ELEMENTWISE, { relu, residual, channels, vec }, {
    outputShape: shape,
    dispatchLayout: { x: shape.map((_, i) => i) },
    dispatch: [Math.ceil(size / 64), 1, 1],
  });
}

function elementwiseCode(p: ElementwiseParams): string {
  const T = p.vec === 4 ? "vec4<f32>" : "f32";
  const CK = p.channels / p.vec;
  let activation = "";
  if (p.relu) {
    activation = p.residual ? `v = select(v, ${T}(0.0), v < ${T}(0.0));` : `v = max(v, ${T}(0.0));`;
  }
  return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let c = index % ${CK};
          let inv = gamma[c] * inverseSqrt(variance[c] + ${T}(uniforms.eps));
          var v = (x[index] - mean[c]) * inv + beta[c];
          ${p.residual ? "v = v + shortcut[index];" : ""}
          ${activation}
          result[index] = v;
        }
      }`;
}

type Info = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

function shapeFacts(x: Info): { rows: number; channels: number } {
  const channels = x.shape[x.shape.length - 1];
  const rows = x.shape.reduce((a, b) => a * b, 1) / Math.max(channels, 1);
  return { rows, channels };
}

/**
 * The plan of a call: `vec4` lanes when the channels come in fours (a quarter of the loads;
 * about 2x faster on llvmpipe, where each load is a loop over the SIMD lanes). A `vec4` plan keeps the scalar plan's rows per lane, chunks and splits (a quarter of
 * the lanes, each taking four channels), so every channel is summed in exactly the same order
 * and the results are bit for bit those of the scalar plan.
 */
function planFor(rows: number, channels: number): BatchNormPlan {
  const plan = planBatchNorm(rows, channels);
  const vec = channels % 4 === 0 && plan.tileC % 4 === 0 ? 4 : 1;
  laneStats[vec === 4 ? "vec4" : "scalar"]++;
  return vec === 1 ? plan : { ...plan, channels: channels / 4, tileC: plan.tileC / 4, vec: 4 };
}

function checkFloat(name: string, infos: Info[]): void {
  for (const t of infos) {
    if (t.dtype !== "float32") throw new Error(`${name}: float32 tensors only, got ${t.dtype}`);
  }
}

/**
 * The forward op: three dispatches (the chunk pass, one merge writing `mean` and `variance`,
 * the elementwise pass). Inputs `x` (channels last), `gamma`, `beta`, and `shortcut` (shaped
 * as `x`) when `attrs.residual`; returns `[y, mean, variance]`.
 */
function batchNormTrain(args: KernelArgs): Info[] {
  const backend = args.backend as WebGPUBackend;
  const inputs = args.inputs as { x: Info; gamma: Info; beta: Info; shortcut?: Info };
  const attrs = args.attrs as unknown as FusedBatchNormAttrs;
  const { x, gamma, beta } = inputs;
  const shortcut = residualInput(FUSED_BATCH_NORM, x, inputs.shortcut, attrs);
  checkFloat(FUSED_BATCH_NORM, [x, gamma, beta, ...(shortcut ? [shortcut] : [])]);
  const { rows, channels } = shapeFacts(x);
  if (rows === 0 || channels === 0) throw new Error(`${FUSED_BATCH_NORM}: empty input`);
  const plan = planFor(rows, channels);
  const u = planUniforms(plan, attrs.epsilon);
  const relu = attrs.activation === "relu";
  stats.forward++;
  const part = backend.runWebGPUProgram(
    chunkPass("stats", plan, false),
    [x],
    "float32",
    u,
  );
  const mean = uninitialized(backend, [channels]);
  const variance = uninitialized(backend, [channels]);
  runDirect(backend, MERGE, { what: "stats", channels }, {
    tensors: [part, mean, variance],
    uniforms: planBytes(plan, attrs.epsilon),
    workgroups: [Math.ceil(channels / 64), 1, 1],
  });
  backend.disposeData(part.dataId);
  const y = backend.runWebGPUProgram(
    elementwise(x.shape, relu, shortcut !== undefined),
    [x, mean, variance, gamma, beta, ...(shortcut ? [shortcut] : [])],
    "float32",
    u,
  );
  return [y, mean, variance];
}

/** The residual input when `attrs.residual` (shaped as `x`), else none; throws on a mismatch. */
function residualInput(
  name: string,
  x: Info,
  shortcut: Info | undefined,
  attrs: FusedBatchNormAttrs,
): Info | undefined {
  if (!attrs.residual) return undefined;
  if (!shortcut || shortcut.shape.join() !== x.shape.join()) {
    throw new Error(`${name}: residual needs a shortcut shaped as x [${x.shape}]`);
  }
  return shortcut;
}

/**
 * The gradient op: three dispatches (the chunk pass, one merge writing `dbeta` and `dgamma`, one
 * pass writing `dx` and, with a residual, its gradient). Inputs: the upstream gradients (`dy`,
 * `dmean`, `dvar`) and the saved forward tensors; returns `[dx, dgamma, dbeta]`, then
 * `dshortcut` when `attrs.residual`.
 */
function batchNormTrainGrad(args: KernelArgs): Info[] {
  const backend = args.backend as WebGPUBackend;
  const inputs = args.inputs as Record<
    "dy" | "x" | "y" | "mean" | "variance" | "gamma" | "dmean" | "dvar",
    Info
  >;
  const attrs = args.attrs as unknown as FusedBatchNormAttrs;
  const { dy, x, y, mean, variance, gamma, dmean, dvar } = inputs;
  checkFloat(FUSED_BATCH_NORM_GRAD, [dy, x, y, mean, variance, gamma, dmean, dvar]);
  const { rows, channels } = shapeFacts(x);
  const plan = planFor(rows, channels);
  const u = planUniforms(plan, attrs.epsilon);
  const relu = attrs.activation === "relu";
  const residual = attrs.residual === true;
  stats.backward++;
  const part = backend.runWebGPUProgram(
    chunkPass("grad", plan, relu),
    [dy, x, mean, gamma, dmean, dvar, ...(relu ? [y] : [])],
    "float32",
    u,
  );
  const dbeta = uninitialized(backend, [channels]);
  const dgamma = uninitialized(backend, [channels]);
  runDirect(backend, MERGE, { what: "grad", channels }, {
    tensors: [part, variance, dbeta, dgamma],
    uniforms: planBytes(plan, attrs.epsilon),
    workgroups: [Math.ceil(channels / 64), 1, 1],
  });
  const dx = uninitialized(backend, x.shape);
  const dshortcut = residual ? uninitialized(backend, x.shape) : null;
  const size = rows * channels / elementVec(channels);
  runDirect(backend, DX, { channels, relu, residual }, {
    tensors: [dy, x, part, variance, ...(relu ? [y] : []), dx, ...(dshortcut ? [dshortcut] : [])],
    uniforms: planBytes(plan, attrs.epsilon, size),
    workgroups: flatGrid(size),
  });
  backend.disposeData(part.dataId);
  return dshortcut ? [dx, dgamma, dbeta, dshortcut] : [dx, dgamma, dbeta];
}

/** The kernels of this file, for the registration list (`list.ts`). */
export const BATCH_NORM_KERNELS: readonly KernelEntry[] = [
  { kernelName: FUSED_BATCH_NORM, make: () => batchNormTrain },
  { kernelName: FUSED_BATCH_NORM_GRAD, make: () => batchNormTrainGrad },
];
