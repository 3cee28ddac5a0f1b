/**
 * The randomized differential test of every webgpu kernel this toolkit registers: seeded random
 * shapes and attributes (odd and non-square maps, every padding form, every `dimRoundingMode`,
 * strides 1-3, groups), forward and gradients, on both kernel profiles, against tfjs's cpu
 * backend (tfjs's own kernels for the replaced ones, the tf-ops composition of `ops/` for the
 * toolkit's new ops).
 *
 * The kernels are read from the registry ({@link registeredKernelNames}); each must be named in
 * {@link COVERED} (one line: the kernel and the family of cases that runs it), or the test fails.
 *
 * @module
 */
import assert from "node:assert/strict";
import { tf, type WebGPUBackend } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { gpuErrors, hasAdapter, relErr } from "./support/gpu.ts";
import { Rng } from "../util/rng.ts";
import { batchNormTraining, FUSED_BATCH_NORM, FUSED_BATCH_NORM_GRAD } from "../ops/batchnorm.ts";
import {
  conv2d as opsConv2d,
  GROUPED_CONV2D,
  GROUPED_CONV2D_FILTER_GRAD,
  GROUPED_CONV2D_INPUT_GRAD,
} from "../ops/conv.ts";
import { SQUEEZE_EXCITE, SQUEEZE_EXCITE_GRAD, squeezeExcitation } from "../ops/squeeze_excite.ts";
import { convGemmStats } from "../webgpu/kernels/conv_gemm.ts";
import { counters } from "../webgpu/runtime/counters.ts";
import {
  type KernelProfile,
  registeredKernelNames,
  registerFastKernels,
  unregisterFastKernels,
  webGpuInstall,
} from "../webgpu/install.ts";

/** Largest error relative to the reference's scale (max |reference|) that passes. */
const TOLERANCE = 1e-5;
/** Random cases per family and profile (besides the pinned ones). */
const RANDOM_CASES = 6;

/** One random case: its attributes (printed on failure) and its data's seed. */
type Case = Record<string, unknown>;

/** A family of cases: how to draw one, and how to compute its outputs and gradients. */
interface Family {
  /** Cases every run includes (regressions), before the random ones. */
  pinned: Case[];
  /** Draws one case. */
  draw(rng: Rng): Case;
  /** Outputs and gradients of the case on the current backend, read back, tensors disposed. */
  run(c: Case, seed: number): Promise<Float32Array[]>;
}

/** Uniform [-1, 1) values. */
function fill(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
}

/**
 * Outputs of `f` and the gradients of `sum(f(...)[i] * g_i)` (seeded `g_i`) with respect to
 * every input, read back; every tensor disposed.
 */
async function valuesAndGrads(
  inputs: tf.Tensor[],
  f: (...xs: tf.Tensor[]) => tf.Tensor[],
  rng: Rng,
): Promise<Float32Array[]> {
  const outs = tf.tidy(() => {
    const ys = f(...inputs);
    const gs = ys.map((y) => tf.tensor(fill(rng, y.size), y.shape));
    const grads = tf.grads((...xs: tf.Tensor[]) =>
      tf.addN(f(...xs).map((y, i) => y.mul(gs[i]).sum()))
    )(inputs);
    return [...ys, ...grads];
  });
  const values = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose([...outs, ...inputs]);
  return values;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)];

type Pad = "same" | "valid" | number | [[0, 0], [number, number], [number, number], [0, 0]];
type Rounding = "floor" | "round" | "ceil" | undefined;

/** A random padding form and rounding mode (rounding only with numeric padding, as tfjs asks). */
function drawPad(rng: Rng): { pad: Pad; rounding: Rounding } {
  const form = rng.int(4);
  const rounding = pick<Rounding>(rng, [undefined, "floor", "round", "ceil"]);
  if (form === 0) return { pad: "same", rounding: undefined };
  if (form === 1) return { pad: "valid", rounding: undefined };
  if (form === 2) return { pad: rng.int(3), rounding };
  const p = () => rng.int(3);
  return { pad: [[0, 0], [p(), p()], [p(), p()], [0, 0]], rounding };
}

/** Whether a convolution of these facts has an output (tfjs rejects an empty one). */
function hasOutput(
  x: number[],
  f: number[],
  stride: number,
  pad: Pad,
  rounding: Rounding,
  depthwise = false,
): boolean {
  const info = tf.backend_util.computeConv2DInfo(
    x as [number, number, number, number],
    f as [number, number, number, number],
    stride,
    1,
    pad,
    rounding,
    depthwise,
  );
  return info.outHeight > 0 && info.outWidth > 0;
}

/** A random `[N, H, W, C]` conv input with `k x k` filters, stride and padding with an output. */
function drawConv(rng: Rng, channels: readonly number[], depthwise = false): Case {
  for (;;) {
    const x = [1 + rng.int(3), 1 + rng.int(11), 1 + rng.int(11), pick(rng, channels)];
    const k = pick(rng, [1, 3, 5]);
    const stride = 1 + rng.int(3);
    const { pad, rounding } = drawPad(rng);
    const f = [k, k, x[3], 1];
    if (hasOutput(x, f, stride, pad, rounding, depthwise)) return { x, k, stride, pad, rounding };
  }
}

/** `tf.conv2d` (and, for some cases, `tf.conv2dTranspose`), forward and both gradients. */
const conv2dFamily: Family = {
  pinned: [
    // The case found wrong: "round" adds an output row whose window runs past the input.
    { x: [2, 8, 6, 3], k: 3, cout: 4, stride: 3, pad: 0, rounding: "round" },
    { x: [1, 7, 9, 4], k: 3, cout: 5, stride: 2, pad: 1, rounding: "ceil" },
    {
      x: [2, 9, 5, 3],
      k: 3,
      cout: 8,
      stride: 2,
      pad: [[0, 0], [1, 0], [0, 1], [0, 0]],
      rounding: "round",
    },
    { x: [2, 7, 7, 4], k: 3, cout: 4, stride: 3, pad: 1, rounding: "ceil", transpose: true },
  ],
  draw(rng) {
    const c = drawConv(rng, [1, 3, 4, 5, 8, 12, 70]);
    return { ...c, cout: pick(rng, [1, 3, 4, 7, 16, 70]), transpose: rng.int(4) === 0 };
  },
  run(c, seed) {
    const rng = new Rng(seed);
    const xs = c.x as number[], k = c.k as number, cout = c.cout as number;
    const stride = c.stride as number, pad = c.pad as Pad, rounding = c.rounding as Rounding;
    const w = tf.tensor4d(fill(rng, k * k * xs[3] * cout), [k, k, xs[3], cout]);
    if (c.transpose) {
      // conv2dTranspose of a dy shaped as conv2d's output: Conv2DBackpropInput forward.
      const info = tf.backend_util.computeConv2DInfo(
        xs as [number, number, number, number],
        [k, k, xs[3], cout],
        stride,
        1,
        pad,
        rounding,
      );
      const dy = tf.tensor4d(fill(rng, info.outShape.reduce((a, b) => a * b)), info.outShape);
      return valuesAndGrads([dy, w], (d, f) => [
        tf.conv2dTranspose(
          d as tf.Tensor4D,
          f as tf.Tensor4D,
          xs as [number, number, number, number],
          stride,
          pad as number,
          rounding,
        ),
      ], rng);
    }
    const x = tf.tensor4d(
      fill(rng, xs.reduce((a, b) => a * b)),
      xs as [number, number, number, number],
    );
    return valuesAndGrads([x, w], (a, f) => [
      tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, stride, pad, "NHWC", 1, rounding),
    ], rng);
  },
};

/** `tf.fused.conv2d` (what `tf.layers.conv2d` calls): plain, or with a bias and an activation. */
const fusedConv2dFamily: Family = {
  pinned: [
    { x: [2, 8, 6, 3], k: 3, cout: 4, stride: 3, pad: 0, rounding: "round", bias: false },
  ],
  draw(rng) {
    const c = drawConv(rng, [1, 3, 4, 8]);
    return { ...c, cout: pick(rng, [1, 4, 6]), bias: rng.int(3) === 0 };
  },
  run(c, seed) {
    const rng = new Rng(seed);
    const xs = c.x as [number, number, number, number], k = c.k as number;
    const cout = c.cout as number;
    const x = tf.tensor4d(fill(rng, xs.reduce((a, b) => a * b)), xs);
    const w = tf.tensor4d(fill(rng, k * k * xs[3] * cout), [k, k, xs[3], cout]);
    const inputs = [x, w, ...(c.bias ? [tf.tensor1d(fill(rng, cout))] : [])];
    return valuesAndGrads(inputs, (a, f, b) => [
      tf.fused.conv2d({
        x: a as tf.Tensor4D,
        filter: f as tf.Tensor4D,
        strides: c.stride as number,
        pad: c.pad as Pad,
        dimRoundingMode: c.rounding as Rounding,
        bias: b,
        activation: b ? "relu" : "linear",
      }),
    ], rng);
  },
};

/** `tf.depthwiseConv2d` with channel multipliers 1-3, forward and both gradients. */
const depthwiseFamily: Family = {
  pinned: [{ x: [2, 8, 6, 3], k: 3, mult: 2, stride: 3, pad: 0, rounding: "round" }],
  draw(rng) {
    return { ...drawConv(rng, [1, 3, 4, 6], true), mult: 1 + rng.int(3) };
  },
  run(c, seed) {
    const rng = new Rng(seed);
    const xs = c.x as [number, number, number, number], k = c.k as number;
    const mult = c.mult as number;
    const x = tf.tensor4d(fill(rng, xs.reduce((a, b) => a * b)), xs);
    const w = tf.tensor4d(fill(rng, k * k * xs[3] * mult), [k, k, xs[3], mult]);
    return valuesAndGrads([x, w], (a, f) => [
      tf.depthwiseConv2d(
        a as tf.Tensor4D,
        f as tf.Tensor4D,
        c.stride as number,
        c.pad as "same",
        "NHWC",
        1,
        c.rounding as Rounding,
      ),
    ], rng);
  },
};

/** Grouped convolution (`ops/conv.ts` `conv2d` with groups; depthwise composition on cpu). */
const groupedFamily: Family = {
  pinned: [{ x: [2, 8, 6, 8], k: 3, groups: 2, go: 3, stride: 3, pad: 0 }],
  draw(rng) {
    for (;;) {
      const groups = 2 + rng.int(3), gi = 1 + rng.int(8), go = 1 + rng.int(8);
      const x = [1 + rng.int(3), 1 + rng.int(11), 1 + rng.int(11), groups * gi];
      const k = pick(rng, [1, 3, 5]), stride = 1 + rng.int(3), pad = rng.int(3);
      if (hasOutput(x, [k, k, gi, 1], stride, pad, "floor")) {
        return { x, k, groups, go, stride, pad };
      }
    }
  },
  run(c, seed) {
    const rng = new Rng(seed);
    const xs = c.x as [number, number, number, number], k = c.k as number;
    const groups = c.groups as number, gi = xs[3] / groups, cout = groups * (c.go as number);
    const x = tf.tensor4d(fill(rng, xs.reduce((a, b) => a * b)), xs);
    const w = tf.tensor4d(fill(rng, k * k * gi * cout), [k, k, gi, cout]);
    const spec = { stride: c.stride as number, padding: c.pad as number, groups };
    return valuesAndGrads([x, w], (a, f) => [
      opsConv2d(a as tf.Tensor4D, f as tf.Tensor4D, spec),
    ], rng);
  },
};

/** Training-mode batch norm (residual and ReLU forms), outputs and statistics, all gradients. */
const batchNormFamily: Family = {
  pinned: [],
  draw(rng) {
    const x = [1 + rng.int(3), 2 + rng.int(9), 2 + rng.int(9), pick(rng, [1, 3, 4, 5, 8, 17, 512])];
    return { x, relu: rng.int(2) === 1, residual: rng.int(2) === 1 };
  },
  run(c, seed) {
    const rng = new Rng(seed);
    const xs = c.x as [number, number, number, number], ch = xs[3];
    const size = xs.reduce((a, b) => a * b);
    const inputs = [
      tf.tensor4d(fill(rng, size).map((v) => 0.5 + 1.5 * v), xs),
      tf.tensor1d(fill(rng, ch).map((v) => 1 + 0.5 * v)),
      tf.tensor1d(fill(rng, ch)),
      ...(c.residual ? [tf.tensor4d(fill(rng, size), xs)] : []),
    ];
    return valuesAndGrads(inputs, (x, gamma, beta, shortcut) => {
      const { y, stats } = batchNormTraining(
        x as tf.Tensor4D,
        gamma as tf.Tensor1D,
        beta as tf.Tensor1D,
        1e-5,
        { activation: c.relu ? "relu" : "linear", shortcut: shortcut as tf.Tensor4D | undefined },
      );
      return [y, stats.mean, stats.variance];
    }, rng);
  },
};

/** Squeeze-and-excitation, output and the gradients of the input and both layers. */
const squeezeExciteFamily: Family = {
  pinned: [],
  draw(rng) {
    const x = [1 + rng.int(3), 1 + rng.int(9), 1 + rng.int(9), pick(rng, [1, 3, 4, 8, 17, 512])];
    return { x, squeeze: 1 + rng.int(6) };
  },
  run(c, seed) {
    const rng = new Rng(seed);
    const xs = c.x as [number, number, number, number], ch = xs[3], s = c.squeeze as number;
    const inputs = [
      tf.tensor4d(fill(rng, xs.reduce((a, b) => a * b)), xs),
      tf.tensor2d(fill(rng, ch * s), [ch, s]),
      tf.tensor1d(fill(rng, s)),
      tf.tensor2d(fill(rng, s * ch), [s, ch]),
      tf.tensor1d(fill(rng, ch)),
    ];
    return valuesAndGrads(inputs, (x, w1, b1, w2, b2) => [
      squeezeExcitation(x as tf.Tensor4D, {
        w1: w1 as tf.Tensor2D,
        b1: b1 as tf.Tensor1D,
        w2: w2 as tf.Tensor2D,
        b2: b2 as tf.Tensor1D,
      }),
    ], rng);
  },
};

/**
 * Every kernel the toolkit registers, and the family of cases that runs it: a new kernel joins
 * the test by one line here.
 */
const COVERED: Record<string, Family> = {
  Conv2D: conv2dFamily,
  Conv2DBackpropInput: conv2dFamily,
  Conv2DBackpropFilter: conv2dFamily,
  FusedConv2D: fusedConv2dFamily,
  DepthwiseConv2dNativeBackpropFilter: depthwiseFamily,
  [GROUPED_CONV2D]: groupedFamily,
  [GROUPED_CONV2D_INPUT_GRAD]: groupedFamily,
  [GROUPED_CONV2D_FILTER_GRAD]: groupedFamily,
  [FUSED_BATCH_NORM]: batchNormFamily,
  [FUSED_BATCH_NORM_GRAD]: batchNormFamily,
  [SQUEEZE_EXCITE]: squeezeExciteFamily,
  [SQUEEZE_EXCITE_GRAD]: squeezeExciteFamily,
};

/** The families' names, for the messages. */
const FAMILY_NAMES = new Map<Family, string>([
  [conv2dFamily, "conv2d"],
  [fusedConv2dFamily, "fused conv2d"],
  [depthwiseFamily, "depthwise conv2d"],
  [groupedFamily, "grouped conv2d"],
  [batchNormFamily, "batch norm"],
  [squeezeExciteFamily, "squeeze-excite"],
]);

/** A case with its family and the seed of its data. */
interface Drawn {
  family: Family;
  name: string;
  c: Case;
  seed: number;
}

/** The cases of one profile: each family's pinned cases, then its random ones (seeded). */
function drawCases(families: Family[], seed: number): Drawn[] {
  const rng = new Rng(seed);
  const out: Drawn[] = [];
  for (const family of families) {
    const name = FAMILY_NAMES.get(family)!;
    const cases = [...family.pinned];
    for (let i = 0; i < RANDOM_CASES; i++) cases.push(family.draw(rng));
    for (const c of cases) out.push({ family, name, c, seed: rng.nextU32() });
  }
  return out;
}

/** Runs `f` while recording the name of every kernel the engine runs. */
async function recordingKernels<T>(names: Set<string>, f: () => Promise<T>): Promise<T> {
  const engine = tf.engine() as unknown as {
    runKernel: (name: string, ...rest: unknown[]) => unknown;
  };
  const runKernel = engine.runKernel;
  engine.runKernel = function (this: unknown, name: string, ...rest: unknown[]) {
    names.add(name);
    return runKernel.call(this, name, ...rest);
  };
  try {
    return await f();
  } finally {
    engine.runKernel = runKernel;
  }
}

/**
 * Runs every case under one profile with the toolkit's kernels, then on tfjs's cpu backend, and
 * compares; checks that every registered kernel ran, and that nothing leaked.
 */
async function checkProfile(profile: KernelProfile, seed: number): Promise<void> {
  const before = { backend: tf.engine().backendName, kernels: webGpuInstall()?.options ?? null };
  try {
    await initBackend({ log: null, fastKernels: false });
    registerFastKernels({ profile });
    const registered = registeredKernelNames();
    const missing = registered.filter((n) => !(n in COVERED));
    assert.deepEqual(missing, [], `registered kernels without a differential case: ${missing}`);
    const families = [...new Set(registered.map((n) => COVERED[n]))];
    const cases = drawCases(families, seed);
    const errors = gpuErrors();
    const backend = tf.backend() as WebGPUBackend;
    const tensors = tf.memory().numTensors, dataIds = backend.numDataIds();
    const ran = new Set<string>();
    counters.reset("conv");
    const fast: Float32Array[][] = [];
    for (const d of cases) {
      const label = `${d.name} ${JSON.stringify(d.c)} seed ${d.seed} (${profile} profile)`;
      try {
        fast.push(await recordingKernels(ran, () => d.family.run(d.c, d.seed)));
      } catch (e) {
        throw new Error(`${label}: ${(e as Error).message}`);
      }
    }
    assert.deepEqual(errors, [], `GPU errors (${profile} profile)`);
    assert.equal(tf.memory().numTensors, tensors, `tensors leaked (${profile} profile)`);
    assert.equal(backend.numDataIds(), dataIds, `buffers leaked (${profile} profile)`);
    const notRun = registered.filter((n) => !ran.has(n));
    assert.deepEqual(notRun, [], `registered kernels no case ran (${profile} profile)`);
    // The conv products took the GEMMs (not only the stock kernels they hand shapes to).
    for (const [op, calls] of Object.entries(convGemmStats)) {
      assert.ok(calls > 0, `fast ${op} never ran (${profile} profile)`);
    }
    unregisterFastKernels();
    await initBackend({ backend: "cpu", log: null });
    const failures: string[] = [];
    for (const [i, d] of cases.entries()) {
      const want = await d.family.run(d.c, d.seed);
      const got = fast[i];
      assert.equal(got.length, want.length);
      for (let j = 0; j < want.length; j++) {
        const err = got[j].length === want[j].length ? relErr(got[j], want[j]) : Infinity;
        if (!(err <= TOLERANCE)) {
          failures.push(
            `${d.name} ${JSON.stringify(d.c)} seed ${d.seed} (${profile} profile): ` +
              `result ${j} (outputs, then gradients by input) off by ${err} relative`,
          );
        }
      }
    }
    if (failures.length > 0) assert.fail(`kernels differ from tfjs cpu:\n${failures.join("\n")}`);
  } finally {
    // Back to the backend and registration found (the cpu backend when there was none).
    unregisterFastKernels();
    await initBackend(
      before.backend === "webgpu"
        ? { log: null, fastKernels: false }
        : { backend: "cpu", log: null },
    );
    if (before.kernels) registerFastKernels(before.kernels);
  }
}

Deno.test({
  name: "differential: every registered kernel matches tfjs cpu (cpu profile, register GEMMs)",
  ignore: !hasAdapter,
  async fn() {
    await checkProfile("cpu", 13);
  },
});

Deno.test({
  name: "differential: every registered kernel matches tfjs cpu (gpu profile, tiled GEMMs)",
  ignore: !hasAdapter,
  async fn() {
    await checkProfile("gpu", 1313);
  },
});
