/**
 * WebGPU kernels of the squeeze-and-excitation op (`ops/squeeze_excite.ts`'s `SqueezeExcite` and
 * `SqueezeExciteGrad`; the op and its dispatch table are described there): seven direct kernels,
 * three forward and four backward. No atomics: every sum has a fixed order, so results are
 * deterministic.
 *
 * @module
 */
import type { tf, WebGPUBackend } from "../../deps.ts";
import { SQUEEZE_EXCITE, SQUEEZE_EXCITE_GRAD } from "../../ops/squeeze_excite.ts";
import { type DirectKernel, runDirect, uninitialized } from "../runtime/direct.ts";
import { counters } from "../runtime/counters.ts";
import type { KernelEntry } from "./declare.ts";
import { flatGrid, flatMain, read, write } from "./wgsl.ts";

/** Calls of the kernels (the `squeezeExcite` counter group): proof they ran. */
const stats = counters.group("squeezeExcite", { forward: 0, backward: 0 });

type Info = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Invocations per workgroup of every dispatch. */
const WG = 64;
/** WGSL: the head of the flat passes' entry point (`index`: the flat invocation index). */
const FLAT_MAIN = flatMain(WG);

/** The sizes of one call. */
interface Dims {
  n: number;
  /** `H * W`. */
  hw: number;
  c: number;
  s: number;
  /** 4 when `C` is a multiple of 4 (the per-pixel passes read `vec4`s), else 1. */
  vec: number;
}

/** Values in `saved` (and in the gradient's work buffer): `2NC + NS`, rounded up to 4. */
function savedSize(d: Dims): number {
  return Math.ceil((2 * d.n * d.c + d.n * d.s) / 4) * 4;
}

function dimsOf(x: Info, w1: Info): Dims {
  const [n, h, w, c] = x.shape;
  const s = w1.shape[1];
  return { n, hw: h * w, c, s, vec: c % 4 === 0 ? 4 : 1 };
}

/** Channel lanes per workgroup of the pooling passes (a power of two, at most 64). */
function poolTile(d: Dims): number {
  const lanes = d.c / d.vec;
  let tile = 1;
  while (tile < lanes && tile < 64) tile *= 2;
  return tile;
}

/**
 * Pixel lanes of the pooling passes: one (a plain loop over the pixels, in order) up to 256
 * pixels, so that small maps are summed in the order of a sequential loop; `256 / tile` beyond.
 */
function poolRows(d: Dims): number {
  return d.hw > 256 ? 256 / poolTile(d) : 1;
}

/** Workgroups of the pooling passes: channel-lane tiles, then samples. */
function poolGroups(d: Dims): [number, number, number] {
  return [Math.ceil(d.c / d.vec / poolTile(d)), d.n, 1];
}

/**
 * Per `(n, channel lane)`: a sum over the `H * W` pixels, `x / HW` (forward, into the `pooled`
 * rows of `out`) or `dy * x` (backward, into the `dz2` rows, later overwritten by `dz2`). A
 * workgroup takes `tile` channel lanes of one sample and `rows` pixel lanes ({@link poolRows}):
 * each pixel lane sums every `rows`-th pixel, then one thread per channel adds the pixel lanes'
 * partial sums in order (a fixed order: results are deterministic). On a GPU, that spreads a
 * 56 x 56 map over many threads instead of one loop per channel.
 */
function poolCode(d: Dims, grad: boolean): string {
  const T = lane(d);
  const L = d.c / d.vec;
  const tile = poolTile(d), rows = poolRows(d);
  const offset = d.n * d.c / d.vec; // pooled (forward) and dz2 (backward) follow N * C values
  const term = grad ? "dy[i] * x[i]" : "x[i]";
  const store = grad ? "acc" : `acc / ${T}(${d.hw}.0)`;
  return `var<workgroup> partial : array<${T}, ${tile * rows}>;
@compute @workgroup_size(${tile * rows})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let lane = i32(lid) % ${tile};
  let row = i32(lid) / ${tile};
  let l = i32(wid.x) * ${tile} + lane;
  let n = i32(wid.y);
  var sum = ${T}(0.0);
  if (l < ${L}) {
    for (var p = row; p < ${d.hw}; p = p + ${rows}) {
      let i = (n * ${d.hw} + p) * ${L} + l;
      sum = sum + ${term};
    }
  }
  partial[lid] = sum;
  workgroupBarrier();
  if (row == 0 && l < ${L}) {
    var acc = partial[lane];
    for (var r = 1; r < ${rows}; r = r + 1) {
      acc = acc + partial[r * ${tile} + lane];
    }
    out[${offset} + n * ${L} + l] = ${store};
  }
}`;
}

/**
 * Forward, one workgroup per sample: `hidden = relu(pooled · W1 + b1)`, then
 * `scale = sigmoid(hidden · W2 + b2)`, both into `saved`.
 */
function excitationCode(d: Dims): string {
  const { n: N, c: C, s: S } = d;
  const pooled = N * C, hidden = 2 * N * C;
  return `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let n = i32(wid.x);
  let t = i32(lid);
  for (var j = t; j < ${S}; j = j + ${WG}) {
    var acc = 0.0;
    for (var c = 0; c < ${C}; c = c + 1) {
      acc = fma(saved[${pooled} + n * ${C} + c], w1[c * ${S} + j], acc);
    }
    let z = acc + b1[j];
    saved[${hidden} + n * ${S} + j] = max(z, 0.0);
  }
  storageBarrier();
  for (var c = t; c < ${C}; c = c + ${WG}) {
    var acc = 0.0;
    for (var j = 0; j < ${S}; j = j + 1) {
      acc = fma(saved[${hidden} + n * ${S} + j], w2[j * ${C} + c], acc);
    }
    let z = acc + b2[c];
    saved[n * ${C} + c] = 1.0 / (1.0 + exp(-1.0 * z));
  }
}`;
}

/**
 * Per element: `y = x * scale` (forward) or `dx = dy * scale + dpooled / HW` (backward); the
 * `scale` rows lead `saved`, the `dpooled` rows lead `work`.
 */
function pixelCode(d: Dims, grad: boolean): string {
  const T = lane(d);
  const L = d.c / d.vec;
  const body = grad
    ? `dx[index] = dy[index] * saved[r] + work[r] / ${T}(${d.hw}.0);`
    : `y[index] = x[index] * saved[r];`;
  return `${FLAT_MAIN}
  if (index >= ${d.n * d.hw * L}) {
    return;
  }
  let r = (index / ${d.hw * L}) * ${L} + index % ${L};
  ${body}
}`;
}

/**
 * Backward, one workgroup per sample: `dz2 = dscale * (s * (1 - s))` (in place of `dscale`),
 * `dz1 = (dz2 · W2ᵀ) [hidden > 0]`, `dpooled = dz1 · W1ᵀ`, all into `work`
 * (`[dpooled N*C][dz2 N*C][dz1 N*S]`).
 */
function backExcitationCode(d: Dims): string {
  const { n: N, c: C, s: S } = d;
  const dz2 = N * C, dz1 = 2 * N * C, hidden = 2 * N * C;
  return `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let n = i32(wid.x);
  let t = i32(lid);
  for (var c = t; c < ${C}; c = c + ${WG}) {
    let s = saved[n * ${C} + c];
    let i = ${dz2} + n * ${C} + c;
    work[i] = work[i] * (s * (1.0 - s));
  }
  storageBarrier();
  for (var j = t; j < ${S}; j = j + ${WG}) {
    var acc = 0.0;
    for (var c = 0; c < ${C}; c = c + 1) {
      acc = fma(work[${dz2} + n * ${C} + c], w2[j * ${C} + c], acc);
    }
    let h = saved[${hidden} + n * ${S} + j];
    work[${dz1} + n * ${S} + j] = select(0.0, acc, h > 0.0);
  }
  storageBarrier();
  for (var c = t; c < ${C}; c = c + ${WG}) {
    var acc = 0.0;
    for (var j = 0; j < ${S}; j = j + 1) {
      acc = fma(work[${dz1} + n * ${S} + j], w1[c * ${S} + j], acc);
    }
    work[n * ${C} + c] = acc;
  }
}`;
}

/**
 * The parameter gradients, one invocation per value, summing over the samples:
 * `dW1 = pooledᵀ · dz1`, `db1 = Σ_n dz1`, `dW2 = hiddenᵀ · dz2`, `db2 = Σ_n dz2`.
 */
function paramGradCode(d: Dims): string {
  const { n: N, c: C, s: S } = d;
  const pooled = N * C, hidden = 2 * N * C, dz2 = N * C, dz1 = 2 * N * C;
  const cs = C * S;
  return `${FLAT_MAIN}
  if (index < ${cs}) {
    let c = index / ${S};
    let j = index % ${S};
    var acc = 0.0;
    for (var n = 0; n < ${N}; n = n + 1) {
      acc = fma(saved[${pooled} + n * ${C} + c], work[${dz1} + n * ${S} + j], acc);
    }
    dw1[index] = acc;
  } else if (index < ${cs + S}) {
    let j = index - ${cs};
    var acc = 0.0;
    for (var n = 0; n < ${N}; n = n + 1) {
      acc = acc + work[${dz1} + n * ${S} + j];
    }
    db1[j] = acc;
  } else if (index < ${2 * cs + S}) {
    let k = index - ${cs + S};
    let j = k / ${C};
    let c = k % ${C};
    var acc = 0.0;
    for (var n = 0; n < ${N}; n = n + 1) {
      acc = fma(saved[${hidden} + n * ${S} + j], work[${dz2} + n * ${C} + c], acc);
    }
    dw2[k] = acc;
  } else if (index < ${2 * cs + S + C}) {
    let c = index - ${2 * cs + S};
    var acc = 0.0;
    for (var n = 0; n < ${N}; n = n + 1) {
      acc = acc + work[${dz2} + n * ${C} + c];
    }
    db2[c] = acc;
  }
}`;
}

/** Throws unless the inputs have the op's shapes and are float32. */
function checkInputs(x: Info, w1: Info, b1: Info, w2: Info, b2: Info): void {
  for (const t of [x, w1, b1, w2, b2]) {
    if (t.dtype !== "float32") {
      throw new Error(`${SQUEEZE_EXCITE}: float32 tensors only, got ${t.dtype}`);
    }
  }
  const [n, h, w, c] = x.shape;
  const s = w1.shape[1];
  const ok = x.shape.length === 4 && w1.shape.length === 2 && w1.shape[0] === c &&
    b1.shape.join() === `${s}` && w2.shape.join() === `${s},${c}` && b2.shape.join() === `${c}`;
  if (!ok) {
    throw new Error(
      `${SQUEEZE_EXCITE}: need x [N,H,W,C], w1 [C,S], b1 [S], w2 [S,C], b2 [C]; got ` +
        `[${x.shape}], [${w1.shape}], [${b1.shape}], [${w2.shape}], [${b2.shape}]`,
    );
  }
  if (n * h * w * c * s === 0) throw new Error(`${SQUEEZE_EXCITE}: empty input`);
}

/** The element type of the per-pixel bindings. */
const lane = (d: Dims) => (d.vec === 4 ? "vec4<f32>" : "f32");

/** The direct kernels, by pass (the parameters are the call's sizes). */
const POOL: DirectKernel<Dims> = {
  name: "se_pool",
  storage: (d) => [read("x", lane(d)), write("out", lane(d))],
  code: (d) => poolCode(d, false),
};
const EXCITE: DirectKernel<Dims> = {
  name: "se_excite",
  storage: () => [write("saved"), read("w1"), read("b1"), read("w2"), read("b2")],
  code: excitationCode,
};
const SCALE: DirectKernel<Dims> = {
  name: "se_scale",
  storage: (d) => [read("x", lane(d)), read("saved", lane(d)), write("y", lane(d))],
  code: (d) => pixelCode(d, false),
};
const DSCALE: DirectKernel<Dims> = {
  name: "se_dscale",
  storage: (d) => [read("dy", lane(d)), read("x", lane(d)), write("out", lane(d))],
  code: (d) => poolCode(d, true),
};
const BACK_EXCITE: DirectKernel<Dims> = {
  name: "se_back_excite",
  storage: () => [read("saved"), read("w1"), read("w2"), write("work")],
  code: backExcitationCode,
};
const PARAM_GRADS: DirectKernel<Dims> = {
  name: "se_params",
  storage:
    () => [read("saved"), read("work"), ...["dw1", "db1", "dw2", "db2"].map((n) => write(n))],
  code: paramGradCode,
};
const DX: DirectKernel<Dims> = {
  name: "se_dx",
  storage: (d) => [...["dy", "saved", "work"].map((n) => read(n, lane(d))), write("dx", lane(d))],
  code: (d) => pixelCode(d, true),
};

/**
 * The forward op: three direct dispatches (pool, the per-sample excitation, the scaling). Inputs
 * `x` `[N, H, W, C]`, `w1` `[C, S]`, `b1` `[S]`, `w2` `[S, C]`, `b2` `[C]`; returns
 * `[y, saved]` (see the module doc).
 */
function squeezeExcite(args: KernelArgs): Info[] {
  const backend = args.backend as WebGPUBackend;
  const inputs = args.inputs as Record<"x" | "w1" | "b1" | "w2" | "b2", Info>;
  const { x, w1, b1, w2, b2 } = inputs;
  checkInputs(x, w1, b1, w2, b2);
  const d = dimsOf(x, w1);
  stats.forward++;
  const saved = uninitialized(backend, [savedSize(d)]);
  runDirect(backend, POOL, d, {
    tensors: [x, saved],
    workgroups: poolGroups(d),
  });
  runDirect(backend, EXCITE, d, {
    tensors: [saved, w1, b1, w2, b2],
    workgroups: [d.n, 1, 1],
  });
  const y = uninitialized(backend, x.shape);
  runDirect(backend, SCALE, d, {
    tensors: [x, saved, y],
    workgroups: flatGrid(d.n * d.hw * d.c / d.vec),
  });
  return [y, saved];
}

/**
 * The gradient op: four direct dispatches (`dscale`, the per-sample back-propagation through the
 * excitation, the parameter gradients, `dx`). Inputs: the upstream gradient `dy`, the forward's
 * `x`, `w1`, `w2` and its `saved` output; returns `[dx, dw1, db1, dw2, db2]`.
 */
function squeezeExciteGrad(args: KernelArgs): Info[] {
  const backend = args.backend as WebGPUBackend;
  const inputs = args.inputs as Record<"dy" | "x" | "w1" | "w2" | "saved", Info>;
  const { dy, x, w1, w2, saved } = inputs;
  const d = dimsOf(x, w1);
  if (dy.shape.join() !== x.shape.join() || saved.shape.join() !== `${savedSize(d)}`) {
    throw new Error(`${SQUEEZE_EXCITE_GRAD}: dy or saved does not match x [${x.shape}]`);
  }
  stats.backward++;
  const work = uninitialized(backend, [savedSize(d)]);
  runDirect(backend, DSCALE, d, {
    tensors: [dy, x, work],
    workgroups: poolGroups(d),
  });
  runDirect(backend, BACK_EXCITE, d, {
    tensors: [saved, w1, w2, work],
    workgroups: [d.n, 1, 1],
  });
  const dw1 = uninitialized(backend, [d.c, d.s]);
  const db1 = uninitialized(backend, [d.s]);
  const dw2 = uninitialized(backend, [d.s, d.c]);
  const db2 = uninitialized(backend, [d.c]);
  runDirect(backend, PARAM_GRADS, d, {
    tensors: [saved, work, dw1, db1, dw2, db2],
    workgroups: flatGrid(2 * d.c * d.s + d.s + d.c),
  });
  const dx = uninitialized(backend, x.shape);
  runDirect(backend, DX, d, {
    tensors: [dy, saved, work, dx],
    workgroups: flatGrid(d.n * d.hw * d.c / d.vec),
  });
  // Still bound in recorded commands: the backend keeps its buffer until the next submit.
  work.dispose();
  return [dx, dw1, db1, dw2, db2];
}

/** The kernels of this file, for the registration list (`list.ts`). */
export const SQUEEZE_EXCITE_KERNELS: readonly KernelEntry[] = [
  { kernelName: SQUEEZE_EXCITE, make: () => squeezeExcite },
  { kernelName: SQUEEZE_EXCITE_GRAD, make: () => squeezeExciteGrad },
];
