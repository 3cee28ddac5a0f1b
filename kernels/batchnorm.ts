/**
 * Batch normalization in training mode (optionally followed by a residual add and a ReLU) as one
 * tfjs op, {@link BATCH_NORM_TRAIN_KERNEL}, with WebGPU kernels for it and for its gradient:
 * three dispatches forward and three backward, where the tf-ops composition (`tf.moments` then
 * `tf.batchNorm`, and their gradients) takes dozens.
 *
 * Inputs `x` `[N, H, W, C]` (any rank, channels last), `gamma` `[C]`, `beta` `[C]`, and with
 * attr `residual` a `shortcut` shaped as `x`; attrs `epsilon` and `activation` (`"linear"` or
 * `"relu"`); outputs `y` (`act(bn(x))`, or `act(bn(x) + shortcut)`), the batch `mean` and the
 * biased batch `variance` (each `[C]`). The rows of `x` (`M = N * H * W` of them) are split
 * into chunks; per channel:
 *
 * | dispatch | forward | backward |
 * | --- | --- | --- |
 * | 1 | per chunk: mean, then centred sum of squares (two passes over the chunk) | per chunk: `Σ g`, `Σ g (x - mean)` with `g` = `dy` (masked by `y > 0` after ReLU) |
 * | 2 | mean: chunk means merged (Chan et al.); variance: `Σ M2_s + n_s (mean_s - mean)²` over chunks, over `M` | `dbeta = Σ g`, `dgamma = Σ g x̂` |
 * | 3 | `y = (x - mean) γ / sqrt(var + eps) + β` (then `+ shortcut`, then ReLU) | `dx` (and `dshortcut = g`) |
 *
 * The merges and the backward's third pass write two outputs each, so they are direct
 * dispatches (`direct.ts`); the others are tfjs programs. With a residual, `bn(x)` is rounded to
 * f32 before the add and the ReLU is tfjs's, so `y` equals the unfused `relu(add(bn(x),
 * shortcut))` bit for bit, and so do the gradients (`g` is `dy` where `y > 0`, else 0).
 *
 * The centred two-pass scheme keeps the variance exact for data with a large mean and a small
 * spread (where `E[x²] - E[x]²` in f32 cancels to noise). The gradient also takes the gradients
 * flowing into the `mean` and `variance` outputs, so the op is a drop-in for the tf-ops path
 * under any loss. No atomics: results are deterministic.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import { kernelOnCurrentBackend, registerOwnKernels, unregisterOwnKernels } from "./own_kernels.ts";
import { flatGrid, flatMain, runDirect, uninitialized } from "./direct.ts";
import type { ProgramUniforms, WebGPUProgram } from "./gemm_program.ts";

/** Name of the fused training-mode batch-norm op (registered for webgpu by `register.ts`). */
export const BATCH_NORM_TRAIN_KERNEL = "RegnetBatchNormTrain";
/**
 * Name of its gradient op: inputs `dy, x, y, mean, variance, gamma, dmean, dvar`; outputs `dx,
 * dgamma, dbeta`, then `dshortcut` with a residual.
 */
export const BATCH_NORM_TRAIN_GRAD_KERNEL = "RegnetBatchNormTrainGrad";

/** Activation fused after the normalization. */
export type BatchNormActivation = "linear" | "relu";

/** Attributes of {@link BATCH_NORM_TRAIN_KERNEL} and its gradient. */
export interface BatchNormTrainAttrs {
  /** Added to the variance before the square root (PyTorch's `eps`). */
  epsilon: number;
  /** Activation applied to the normalized output (after the residual add, if any). */
  activation: BatchNormActivation;
  /**
   * Whether the op takes a `shortcut` input (shaped as `x`) added to the normalized output
   * before the activation: `y = act(bn(x) + shortcut)`, a ResNet block's tail. Absent: false.
   */
  residual?: boolean;
}

/** Calls of the fused kernels since {@link resetFusedBatchNormStats}: proof they ran. */
export const fusedBatchNormStats: { forward: number; backward: number } = {
  forward: 0,
  backward: 0,
};

/** Per-chunk passes by lane width since {@link resetFusedBatchNormStats}: `vec4` or scalar. */
export const fusedBatchNormLaneStats: { vec4: number; scalar: number } = { vec4: 0, scalar: 0 };

/** Zeroes {@link fusedBatchNormStats} and {@link fusedBatchNormLaneStats}. */
export function resetFusedBatchNormStats(): void {
  fusedBatchNormStats.forward = 0;
  fusedBatchNormStats.backward = 0;
  fusedBatchNormLaneStats.vec4 = 0;
  fusedBatchNormLaneStats.scalar = 0;
}

/** Workgroups the per-chunk pass aims for (channel tiles times chunks). */
const TARGET_WORKGROUPS = 256;
/** Invocations per workgroup of the per-chunk pass. */
const THREADS = 256;
/** Rows of the gradient's chunk table after the `2S` partial rows (see `ChunkPassProgram`). */
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
class ChunkPassProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputComponent: number;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[]; y: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms = PLAN_UNIFORMS;
  private readonly mode: "stats" | "grad";
  private readonly relu: boolean;
  private readonly plan: BatchNormPlan;

  constructor(mode: "stats" | "grad", plan: BatchNormPlan, relu: boolean) {
    this.mode = mode;
    this.relu = relu && mode === "grad";
    this.plan = plan;
    this.variableNames = mode === "stats"
      ? ["x"]
      : ["dy", "x", "mean", "gamma", "dmean", "dvar", ...(this.relu ? ["y"] : [])];
    this.variableComponents = this.variableNames.map(() => plan.vec);
    this.outputComponent = plan.vec;
    const rows = 2 * plan.splits + (mode === "grad" ? GRAD_EXTRA_ROWS : 0);
    this.outputShape = [rows, plan.channels * plan.vec];
    this.workgroupSize = [plan.tileC, plan.tileR, 1];
    this.dispatchLayout = { x: [1], y: [0] };
    this.dispatch = [Math.ceil(plan.channels / plan.tileC), plan.splits, 1];
    this.shaderKey = `regnet_bn_chunk_${mode}_${
      this.relu ? "relu" : "lin"
    }_${plan.channels}_${plan.tileC}_${plan.vec}`;
  }

  getUserCode(): string {
    const { channels: C, tileC: TC, tileR: TR, vec } = this.plan;
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
    if (this.mode === "stats") {
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
      const mask = this.relu ? `g = select(g, ${zero}, y[i] <= ${zero});` : "";
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

const PLAN_STRUCT = `struct Plan { rows : i32, chunk : i32, splits : i32, eps : f32, size : i32,
  pad0 : i32, pad1 : i32, pad2 : i32, }`;

/** WGSL storage bindings in order, then the `Plan` uniform block. */
function bindingDecls(names: [string, "read" | "read_write", string][]): string {
  const lines = names.map(([name, access, type], i) =>
    `@group(0) @binding(${i}) var<storage, ${access}> ${name} : array<${type}>;`
  );
  lines.push(`@group(0) @binding(${names.length}) var<uniform> uniforms : Plan;`);
  return `${PLAN_STRUCT}\n${lines.join("\n")}`;
}

/** Rows `r0..r1` of the chunk `s` as an f32 count (WGSL expression). */
const CHUNK_COUNT = `f32(min(uniforms.rows, (s + 1) * uniforms.chunk) - s * uniforms.chunk)`;

/**
 * WGSL of the per-channel merge of the chunk table, one invocation per channel, both outputs
 * of a pass in one dispatch. `stats`: `mean` (chunk means merged, Chan et al.) and `variance`
 * (`Σ M2_s + n_s (mean_s - mean)²` over `M`). `grad`: `dbeta = Σ g` and `dgamma = Σ g x̂`, also
 * copied into rows `2S + 4` and `2S + 5` of the table for the `dx` pass.
 */
function mergeCode(what: "stats" | "grad", channels: number): string {
  const C = channels;
  let decls: string, body: string;
  if (what === "stats") {
    decls = bindingDecls([
      ["part", "read", "f32"],
      ["mean", "read_write", "f32"],
      ["variance", "read_write", "f32"],
    ]);
    body = `
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
      variance[c] = m2 / f32(uniforms.rows);`;
  } else {
    decls = bindingDecls([
      ["part", "read_write", "f32"],
      ["variance", "read", "f32"],
      ["dbeta", "read_write", "f32"],
      ["dgamma", "read_write", "f32"],
    ]);
    body = `
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
  }
  return `${decls}
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

/**
 * WGSL of the `dx` pass: `dx` from the chunk table (`mean, gamma, dmean, dvar, dbeta, dgamma`
 * rows after the partials), `variance`, `dy` (masked by `y > 0` after ReLU) and `x`; with a
 * residual input, also its gradient (the masked `dy`) in the same dispatch.
 */
function dxCode(channels: number, relu: boolean, residual: boolean): string {
  const vec = elementVec(channels);
  const T = vec === 4 ? "vec4<f32>" : "f32";
  const CK = channels / vec;
  const decls = bindingDecls([
    ["dy", "read", T],
    ["x", "read", T],
    ["part", "read", T],
    ["variance", "read", T],
    ...(relu ? [["y", "read", T] as [string, "read", string]] : []),
    ["dx", "read_write", T],
    ...(residual ? [["dshortcut", "read_write", T] as [string, "read_write", string]] : []),
  ]);
  return `${decls}
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

/**
 * The forward's elementwise pass: `y = (x - mean) γ / sqrt(var + eps) + β`, rounded to f32,
 * then `+ shortcut` with a residual input, then the activation (the ReLU after a residual as
 * tfjs's `Relu` computes it, so that the fused op equals `relu(add(bn(x), shortcut))` bit for bit).
 */
class ElementwiseProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputComponent: number;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;
  uniforms = PLAN_UNIFORMS;
  private readonly relu: boolean;
  private readonly residual: boolean;
  private readonly channels: number;
  private readonly vec: number;

  constructor(shape: number[], relu: boolean, residual: boolean) {
    this.relu = relu;
    this.residual = residual;
    this.channels = shape[shape.length - 1];
    this.vec = elementVec(this.channels);
    this.variableNames = ["x", "mean", "variance", "gamma", "beta"];
    if (residual) this.variableNames.push("shortcut");
    this.variableComponents = this.variableNames.map(() => this.vec);
    this.outputComponent = this.vec;
    this.outputShape = shape;
    this.dispatchLayout = { x: shape.map((_, i) => i) };
    const size = shape.reduce((a, b) => a * b, 1) / this.vec;
    this.dispatch = [Math.ceil(size / 64), 1, 1];
    this.shaderKey = `regnet_bn_y_${relu ? "relu" : "lin"}_${
      residual ? "res" : "plain"
    }_${this.channels}_${this.vec}`;
  }

  getUserCode(): string {
    const T = this.vec === 4 ? "vec4<f32>" : "f32";
    const CK = this.channels / this.vec;
    let activation = "";
    if (this.relu) {
      activation = this.residual
        ? `v = select(v, ${T}(0.0), v < ${T}(0.0));`
        : `v = max(v, ${T}(0.0));`;
    }
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let c = index % ${CK};
          let inv = gamma[c] * inverseSqrt(variance[c] + ${T}(uniforms.eps));
          var v = (x[index] - mean[c]) * inv + beta[c];
          ${this.residual ? "v = v + shortcut[index];" : ""}
          ${activation}
          result[index] = v;
        }
      }`;
  }
}

type Info = tf.TensorInfo;

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
  fusedBatchNormLaneStats[vec === 4 ? "vec4" : "scalar"]++;
  return vec === 1 ? plan : { ...plan, channels: channels / 4, tileC: plan.tileC / 4, vec: 4 };
}

function checkFloat(name: string, infos: Info[]): void {
  for (const t of infos) {
    if (t.dtype !== "float32") throw new Error(`${name}: float32 tensors only, got ${t.dtype}`);
  }
}

/**
 * Runs the forward op on the webgpu backend: three dispatches (the chunk pass, one merge
 * writing `mean` and `variance`, the elementwise pass).
 *
 * @param backend the tfjs webgpu backend
 * @param inputs `x` (channels last), `gamma`, `beta`, and `shortcut` (shaped as `x`) when
 *   `attrs.residual`
 * @param attrs epsilon, activation, residual
 * @returns `[y, mean, variance]`
 */
export function runBatchNormTrain(
  backend: WebGPUBackend,
  inputs: { x: Info; gamma: Info; beta: Info; shortcut?: Info },
  attrs: BatchNormTrainAttrs,
): Info[] {
  const { x, gamma, beta } = inputs;
  const shortcut = residualInput(BATCH_NORM_TRAIN_KERNEL, x, inputs.shortcut, attrs);
  checkFloat(BATCH_NORM_TRAIN_KERNEL, [x, gamma, beta, ...(shortcut ? [shortcut] : [])]);
  const { rows, channels } = shapeFacts(x);
  if (rows === 0 || channels === 0) throw new Error(`${BATCH_NORM_TRAIN_KERNEL}: empty input`);
  const plan = planFor(rows, channels);
  const u = planUniforms(plan, attrs.epsilon);
  const relu = attrs.activation === "relu";
  fusedBatchNormStats.forward++;
  const part = backend.runWebGPUProgram(
    new ChunkPassProgram("stats", plan, false),
    [x],
    "float32",
    u,
  );
  const mean = uninitialized(backend, [channels]);
  const variance = uninitialized(backend, [channels]);
  runDirect(backend, {
    key: `regnet_bn_merge_stats_${channels}`,
    code: () => mergeCode("stats", channels),
    bindings: [
      { tensor: part, access: "read" },
      { tensor: mean, access: "read_write" },
      { tensor: variance, access: "read_write" },
    ],
    uniforms: planBytes(plan, attrs.epsilon),
    workgroups: [Math.ceil(channels / 64), 1, 1],
  });
  backend.disposeData(part.dataId);
  const y = backend.runWebGPUProgram(
    new ElementwiseProgram(x.shape, relu, shortcut !== undefined),
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
  attrs: BatchNormTrainAttrs,
): Info | undefined {
  if (!attrs.residual) return undefined;
  if (!shortcut || shortcut.shape.join() !== x.shape.join()) {
    throw new Error(`${name}: residual needs a shortcut shaped as x [${x.shape}]`);
  }
  return shortcut;
}

/**
 * Runs the gradient op on the webgpu backend: three dispatches (the chunk pass, one merge
 * writing `dbeta` and `dgamma`, one pass writing `dx` and, with a residual, its gradient).
 *
 * @param backend the tfjs webgpu backend
 * @param inputs upstream gradients (`dy`, `dmean`, `dvar`), the saved forward tensors
 * @param attrs epsilon, activation, residual (as in the forward call)
 * @returns `[dx, dgamma, dbeta]`, then `dshortcut` when `attrs.residual`
 */
export function runBatchNormTrainGrad(
  backend: WebGPUBackend,
  inputs: {
    dy: Info;
    x: Info;
    y: Info;
    mean: Info;
    variance: Info;
    gamma: Info;
    dmean: Info;
    dvar: Info;
  },
  attrs: BatchNormTrainAttrs,
): Info[] {
  const { dy, x, y, mean, variance, gamma, dmean, dvar } = inputs;
  checkFloat(BATCH_NORM_TRAIN_GRAD_KERNEL, [dy, x, y, mean, variance, gamma, dmean, dvar]);
  const { rows, channels } = shapeFacts(x);
  const plan = planFor(rows, channels);
  const u = planUniforms(plan, attrs.epsilon);
  const relu = attrs.activation === "relu";
  const residual = attrs.residual === true;
  fusedBatchNormStats.backward++;
  const part = backend.runWebGPUProgram(
    new ChunkPassProgram("grad", plan, relu),
    [dy, x, mean, gamma, dmean, dvar, ...(relu ? [y] : [])],
    "float32",
    u,
  );
  const dbeta = uninitialized(backend, [channels]);
  const dgamma = uninitialized(backend, [channels]);
  runDirect(backend, {
    key: `regnet_bn_merge_grad_${channels}`,
    code: () => mergeCode("grad", channels),
    bindings: [
      { tensor: part, access: "read_write" },
      { tensor: variance, access: "read" },
      { tensor: dbeta, access: "read_write" },
      { tensor: dgamma, access: "read_write" },
    ],
    uniforms: planBytes(plan, attrs.epsilon),
    workgroups: [Math.ceil(channels / 64), 1, 1],
  });
  const dx = uninitialized(backend, x.shape);
  const dshortcut = residual ? uninitialized(backend, x.shape) : null;
  const size = rows * channels / elementVec(channels);
  runDirect(backend, {
    key: `regnet_bn_dx_${relu ? "relu" : "lin"}_${residual ? "res" : "plain"}_${channels}`,
    code: () => dxCode(channels, relu, residual),
    bindings: [
      { tensor: dy, access: "read" },
      { tensor: x, access: "read" },
      { tensor: part, access: "read" },
      { tensor: variance, access: "read" },
      ...(relu ? [{ tensor: y, access: "read" as const }] : []),
      { tensor: dx, access: "read_write" },
      ...(dshortcut ? [{ tensor: dshortcut, access: "read_write" as const }] : []),
    ],
    uniforms: planBytes(plan, attrs.epsilon, size),
    workgroups: flatGrid(size),
  });
  backend.disposeData(part.dataId);
  return dshortcut ? [dx, dgamma, dbeta, dshortcut] : [dx, dgamma, dbeta];
}

tf.registerGradient({
  kernelName: BATCH_NORM_TRAIN_KERNEL,
  inputsToSave: ["x", "gamma"],
  outputsToSave: [true, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [dy, dmean, dvar] = dys as tf.Tensor[];
    const [x, gamma, y, mean, variance] = saved;
    const [dx, dgamma, dbeta, dshortcut] = tf.engine().runKernel(
      BATCH_NORM_TRAIN_GRAD_KERNEL,
      { dy, x, y, mean, variance, gamma, dmean, dvar },
      attrs as unknown as tf.NamedAttrMap,
    ) as tf.Tensor[];
    const grads: Record<string, () => tf.Tensor> = {
      x: () => dx,
      gamma: () => dgamma,
      beta: () => dbeta,
    };
    if (dshortcut) grads.shortcut = () => dshortcut;
    return grads;
  },
});

/**
 * Registers {@link BATCH_NORM_TRAIN_KERNEL} and its gradient kernel for the webgpu backend.
 * Idempotent. (`registerFastKernels` in `register.ts` calls it.)
 *
 * @example
 * ```ts
 * import { registerBatchNormKernels, unregisterBatchNormKernels } from "./batchnorm.ts";
 * registerBatchNormKernels();
 * unregisterBatchNormKernels();
 * ```
 */
export function registerBatchNormKernels(): void {
  const forward: tf.KernelFunc = (args) =>
    runBatchNormTrain(
      args.backend as WebGPUBackend,
      args.inputs as { x: Info; gamma: Info; beta: Info; shortcut?: Info },
      args.attrs as unknown as BatchNormTrainAttrs,
    );
  const backward: tf.KernelFunc = (args) =>
    runBatchNormTrainGrad(
      args.backend as WebGPUBackend,
      args.inputs as Parameters<typeof runBatchNormTrainGrad>[1],
      args.attrs as unknown as BatchNormTrainAttrs,
    );
  registerOwnKernels([
    [BATCH_NORM_TRAIN_KERNEL, forward],
    [BATCH_NORM_TRAIN_GRAD_KERNEL, backward],
  ]);
}

/**
 * Removes the kernels {@link registerBatchNormKernels} registered. Idempotent.
 *
 * @example
 * ```ts
 * import { unregisterBatchNormKernels } from "./batchnorm.ts";
 * unregisterBatchNormKernels();
 * ```
 */
export function unregisterBatchNormKernels(): void {
  unregisterOwnKernels([BATCH_NORM_TRAIN_KERNEL, BATCH_NORM_TRAIN_GRAD_KERNEL]);
}

/**
 * Whether the fused op can run on the current backend (its kernel is registered there).
 *
 * @returns true when {@link BATCH_NORM_TRAIN_KERNEL} has a kernel for `tf.getBackend()`
 * @example
 * ```ts
 * import { fusedBatchNormAvailable } from "./batchnorm.ts";
 * console.log(typeof fusedBatchNormAvailable()); // "boolean"
 * ```
 */
export function fusedBatchNormAvailable(): boolean {
  return kernelOnCurrentBackend(BATCH_NORM_TRAIN_KERNEL);
}

/**
 * The fused op: training-mode batch normalization over all axes but the last, then the
 * residual add (with a `shortcut`), then the activation. Differentiable (the gradient runs {@link BATCH_NORM_TRAIN_GRAD_KERNEL}).
 * Needs a backend with the kernel ({@link fusedBatchNormAvailable}).
 *
 * @param x input, channels last, float32, not empty
 * @param params `gamma`, `beta` (`[C]`), `epsilon`, the activation (`"linear"` default), and
 *   a `shortcut` shaped as `x` to add before the activation (`y = act(bn(x) + shortcut)`)
 * @returns the output and the batch mean and biased variance
 * @example
 * ```ts ignore
 * const { y, mean, variance } = batchNormTrain(x, { gamma, beta, epsilon: 1e-5 });
 * ```
 */
export function batchNormTrain(
  x: tf.Tensor,
  params: {
    gamma: tf.Tensor1D;
    beta: tf.Tensor1D;
    epsilon: number;
    activation?: BatchNormActivation;
    shortcut?: tf.Tensor;
  },
): { y: tf.Tensor; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const attrs: BatchNormTrainAttrs = {
    epsilon: params.epsilon,
    activation: params.activation ?? "linear",
    residual: params.shortcut !== undefined,
  };
  const inputs: tf.NamedTensorMap = { x, gamma: params.gamma, beta: params.beta };
  if (params.shortcut) inputs.shortcut = params.shortcut;
  const [y, mean, variance] = tf.engine().runKernel(
    BATCH_NORM_TRAIN_KERNEL,
    inputs,
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
  return { y, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
}
