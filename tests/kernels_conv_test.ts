import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend, probeAdapter } from "../backend/backend.ts";
import { gpuErrors, hasAdapter, relErr } from "./support/gpu.ts";
import { Rng } from "../util/rng.ts";
import { convAndGrads, type ConvShape } from "./support/conv.ts";
import {
  convGemmLayoutStats,
  convGemmSpec,
  convGemmStats,
  CPU_SPLIT_POLICY,
} from "../webgpu/kernels/conv_gemm.ts";
import {
  adapterProfile,
  CONV_KERNEL_NAMES,
  type KernelProfile,
  profileFor,
  registerFastKernels,
  unregisterFastKernels,
  webGpuInstall,
} from "../webgpu/install.ts";
import { counters } from "../webgpu/runtime/counters.ts";
import { ownKernelRegistered } from "../webgpu/kernels/registry.ts";

/** The convolution policy of the install in force. */
const currentConvPolicy = () => webGpuInstall()!.policies.conv;
/** Zeroes the convolution counters. */
const resetFastConvStats = () => {
  counters.reset("conv");
  counters.reset("convLayout");
};

type Pad = number | "same" | "valid";
interface Case extends ConvShape {
  stride: number;
  pad: Pad;
}

/** Forward, input gradient and filter gradient of `sum(conv2d(x, w) * g)` on the current backend. */
function convCase(c: Case, seed: number): Promise<Float32Array[]> {
  return convAndGrads(c, seed, c.cin, (x, w) => tf.conv2d(x, w, c.stride, c.pad));
}

function randomCases(count: number, seed: number): Case[] {
  const rng = new Rng(seed);
  const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)];
  const cases: Case[] = [];
  for (let i = 0; i < count; i++) {
    const k = pick([1, 3]);
    cases.push({
      batch: 1 + rng.int(5),
      h: pick([5, 7, 8, 9, 11]),
      w: pick([5, 6, 9, 13]),
      cin: pick([1, 3, 4, 5, 8, 12, 17]),
      cout: pick([1, 3, 4, 7, 16, 20, 33, 70]),
      k,
      stride: pick([1, 2]),
      pad: pick<Pad>(k === 1 ? [0, "valid", "same"] : [0, 1, "same", "valid"]),
    });
  }
  // Cases that take the split-K path (checked below) and the ResNet20 shortcut form.
  cases.push({ batch: 5, h: 31, w: 33, cin: 3, cout: 16, k: 3, stride: 1, pad: 1 });
  cases.push({ batch: 1, h: 3, w: 3, cin: 64, cout: 8, k: 3, stride: 1, pad: 1 });
  cases.push({ batch: 3, h: 16, w: 16, cin: 16, cout: 32, k: 1, stride: 2, pad: "valid" });
  cases.push({ batch: 2, h: 9, w: 9, cin: 32, cout: 64, k: 3, stride: 2, pad: 1 });
  // A stride phase with no rows at all (a one-row image at stride 2).
  cases.push({ batch: 2, h: 1, w: 2, cin: 4, cout: 8, k: 3, stride: 2, pad: 1 });
  return cases;
}

/**
 * Checks forward, input and filter gradients of the fast kernels under one adapter profile
 * against stock webgpu and tfjs cpu, and that every GEMM ran on the profile's layout.
 */
async function checkProfile(profile: KernelProfile, cases: Case[]): Promise<void> {
  try {
    await initBackend({ log: null, fastKernels: false });
    const errors = gpuErrors();
    const layout = profile === "cpu" ? "register" : "tiled";
    for (const [i, c] of cases.entries()) {
      const label = `${JSON.stringify(c)} (${profile} profile)`;
      // Fast first: a failed dispatch would otherwise read back a recycled stock buffer.
      await initBackend({ log: null, fastKernels: false });
      registerFastKernels({ profile });
      assert.equal(currentConvPolicy().layout, layout);
      resetFastConvStats();
      const fast = await convCase(c, i);
      assert.deepEqual(
        { ...convGemmStats },
        { forward: 2, inputGrad: 1, filterGrad: 1, depthwiseFilterGrad: 0 },
        `fast kernels not used for ${label}`,
      );
      const other = layout === "tiled" ? "register" : "tiled";
      assert.ok(convGemmLayoutStats[layout] >= 4, `${layout} GEMMs not used for ${label}`);
      assert.equal(convGemmLayoutStats[other], 0, `${other} GEMMs used for ${label}`);
      unregisterFastKernels();
      resetFastConvStats();
      const stock = await convCase(c, i);
      assert.ok(
        Object.values(convGemmStats).every((v) => v === 0),
        "stock run used fast kernels",
      );
      await initBackend({ backend: "cpu", log: null });
      const cpu = await convCase(c, i);
      for (const [j, what] of ["forward", "input grad", "filter grad"].entries()) {
        const vsStock = relErr(fast[j], stock[j]), vsCpu = relErr(fast[j], cpu[j]);
        assert.ok(vsStock <= 1e-4, `${what} vs stock webgpu: ${vsStock} for ${label}`);
        assert.ok(vsCpu <= 1e-4, `${what} vs tfjs cpu: ${vsCpu} for ${label}`);
      }
    }
    assert.deepEqual(errors, []);
  } finally {
    unregisterFastKernels();
    await initBackend({ backend: "cpu", log: null });
  }
}

Deno.test({
  name: "fast conv kernels (cpu profile, register GEMMs) match stock webgpu and tfjs cpu",
  ignore: !hasAdapter,
  async fn() {
    // Two products large enough for the 16-row register blocks (vec4 and scalar output).
    const large: Case[] = [
      { batch: 4, h: 17, w: 15, cin: 16, cout: 36, k: 3, stride: 1, pad: 1 },
      { batch: 6, h: 23, w: 21, cin: 20, cout: 33, k: 3, stride: 2, pad: 1 },
    ];
    await checkProfile("cpu", [...randomCases(10, 2024), ...large]);
  },
});

Deno.test({
  name: "fast conv kernels (gpu profile, tiled GEMMs) match stock webgpu and tfjs cpu",
  ignore: !hasAdapter,
  async fn() {
    await checkProfile("gpu", randomCases(10, 2025));
  },
});

Deno.test("kernel profile: cpu only on Deno's software adapters, gpu on a browser's fallback adapter", () => {
  // What Deno 2.9.6 reports for Mesa's llvmpipe on this machine.
  const llvmpipe = {
    vendor: "65541",
    architecture: "",
    device: "0",
    description: "llvmpipe (LLVM 15.0.6, 256 bits)",
    isFallbackAdapter: true,
  };
  assert.equal(profileFor(llvmpipe, "deno"), "cpu");
  // By name alone, when the fallback flag is missing.
  assert.equal(profileFor({ ...llvmpipe, isFallbackAdapter: undefined }, "deno"), "cpu");
  assert.equal(
    profileFor({ description: "Mesa lavapipe", isFallbackAdapter: false }, "deno"),
    "cpu",
  );
  // Chromium's SwiftShader: a fallback adapter, but its shader builds want the gpu tuning.
  const swiftShader = { vendor: "google", architecture: "swiftshader", isFallbackAdapter: true };
  assert.equal(profileFor(swiftShader, "browser"), "gpu");
  // The same llvmpipe seen from a browser gets the gpu tuning too.
  assert.equal(profileFor(llvmpipe, "browser"), "gpu");
  const nvidia = {
    vendor: "nvidia",
    architecture: "hopper",
    device: "",
    description: "NVIDIA H200",
    isFallbackAdapter: false,
  };
  assert.equal(profileFor(nvidia, "deno"), "gpu");
  assert.equal(profileFor(nvidia, "browser"), "gpu");
  // An unknown software adapter: cpu on Deno (its fallback flag decides), gpu in a browser.
  const unknown = { description: "Some Rasterizer", isFallbackAdapter: true };
  assert.equal(profileFor(unknown, "deno"), "cpu");
  assert.equal(profileFor(unknown, "browser"), "gpu");
  assert.equal(profileFor({}, "deno"), "gpu");
});

Deno.test({
  name: "fast conv kernels: the profile follows the adapter (cpu on Deno's software adapter)",
  ignore: !hasAdapter,
  async fn() {
    try {
      await initBackend({ log: null });
      const probe = await probeAdapter();
      assert.ok(probe, "no adapter");
      const facts = { isFallbackAdapter: probe.fallback, description: probe.name };
      const expected = profileFor(facts, "deno");
      assert.equal(adapterProfile(), expected);
      if (expected === "cpu") {
        assert.equal(currentConvPolicy().layout, "register");
        registerFastKernels({ profile: "gpu" });
        assert.equal(currentConvPolicy().layout, "tiled");
        registerFastKernels();
        assert.equal(currentConvPolicy().layout, "register");
      }
    } finally {
      unregisterFastKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

/** The filter gradient of `sum(depthwiseConv2d(x, w) * g)` on the current backend. */
async function depthwiseFilterGrad(
  c: Case & { mult: number },
  seed: number,
): Promise<Float32Array> {
  const rng = new Rng(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
  const x = tf.tensor4d(fill(c.batch * c.h * c.w * c.cin), [c.batch, c.h, c.w, c.cin]);
  const w = tf.tensor4d(fill(c.k * c.k * c.cin * c.mult), [c.k, c.k, c.cin, c.mult]);
  const y = tf.depthwiseConv2d(x, w, c.stride, c.pad);
  const g = tf.tensor(fill(y.size), y.shape);
  const grad = tf.grad((b: tf.Tensor) =>
    tf.depthwiseConv2d(x, b as tf.Tensor4D, c.stride, c.pad).mul(g).sum()
  );
  const dw = grad(w);
  const out = await dw.data() as Float32Array;
  tf.dispose([x, w, y, g, dw]);
  return out;
}

Deno.test({
  name: "fast depthwise filter gradient matches stock webgpu and tfjs cpu",
  ignore: !hasAdapter,
  async fn() {
    try {
      const cases: (Case & { mult: number })[] = [
        { batch: 3, h: 7, w: 9, cin: 5, cout: 5, k: 3, stride: 1, pad: 1, mult: 1 },
        { batch: 2, h: 9, w: 8, cin: 8, cout: 16, k: 3, stride: 2, pad: "same", mult: 2 },
        { batch: 1, h: 6, w: 5, cin: 3, cout: 9, k: 1, stride: 2, pad: "valid", mult: 3 },
        { batch: 4, h: 5, w: 7, cin: 70, cout: 70, k: 3, stride: 2, pad: 0, mult: 1 },
        // Long enough to be split over many workgroups.
        { batch: 5, h: 23, w: 21, cin: 6, cout: 6, k: 3, stride: 1, pad: 1, mult: 1 },
      ];
      for (const [i, c] of cases.entries()) {
        const label = JSON.stringify(c);
        await initBackend({ log: null, fastKernels: false });
        registerFastKernels();
        resetFastConvStats();
        const fast = await depthwiseFilterGrad(c, i);
        assert.equal(convGemmStats.depthwiseFilterGrad, 1, `fast kernel not used for ${label}`);
        unregisterFastKernels();
        const stock = await depthwiseFilterGrad(c, i);
        await initBackend({ backend: "cpu", log: null });
        const cpu = await depthwiseFilterGrad(c, i);
        assert.ok(relErr(fast, stock) <= 1e-4, `vs stock: ${relErr(fast, stock)} ${label}`);
        assert.ok(relErr(fast, cpu) <= 1e-4, `vs cpu: ${relErr(fast, cpu)} ${label}`);
      }
    } finally {
      unregisterFastKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

Deno.test("fast conv kernels: split-K is taken where the reduction is long", () => {
  const info = (x: [number, number, number, number], f: [number, number, number, number]) =>
    tf.backend_util.computeConv2DInfo(x, f, 1, 1, 1);
  const long = convGemmSpec("filterGrad", info([5, 31, 33, 3], [3, 3, 3, 16]));
  assert.ok(long.spec.splits > 1, `filter grad splits ${long.spec.splits}`);
  assert.equal(long.spec.outputShape.join(), [long.spec.splits, 27, 16].join());
  assert.ok(long.chunk * long.spec.splits >= long.k && long.chunk % 16 === 0);
  const fwd = convGemmSpec("forward", info([1, 3, 3, 64], [3, 3, 64, 8]));
  assert.ok(fwd.spec.splits > 1, `forward splits ${fwd.spec.splits}`);
  const big = convGemmSpec("forward", info([64, 32, 32, 16], [3, 3, 16, 16]));
  assert.equal(big.spec.splits, 1);
  assert.equal(big.spec.outputShape.join(), "64,32,32,16");
  // The cpu profile: register blocks, and only as many splits as a few CPU threads need.
  const cpuLong = convGemmSpec("filterGrad", info([64, 32, 32, 16], [3, 3, 16, 16]), {
    ...CPU_SPLIT_POLICY,
  });
  assert.equal(cpuLong.spec.layout, "register");
  assert.ok(cpuLong.spec.splits > 1 && cpuLong.spec.splits <= 256, `${cpuLong.spec.splits}`);
  assert.ok(cpuLong.chunk * cpuLong.spec.splits >= cpuLong.k && cpuLong.chunk % 4 === 0);
  const gpuLong = convGemmSpec("filterGrad", info([64, 32, 32, 16], [3, 3, 16, 16]));
  assert.equal(gpuLong.spec.layout, "tiled");
  const cpuBig = convGemmSpec("forward", info([64, 32, 32, 16], [3, 3, 16, 16]), CPU_SPLIT_POLICY);
  assert.equal(cpuBig.spec.splits, 1);
  assert.equal(cpuBig.spec.tile.tm * cpuBig.spec.tile.tn, 16 * 16);
});

Deno.test({
  name: "fast conv kernels: unsupported configurations run tfjs's own kernel",
  ignore: !hasAdapter,
  async fn() {
    try {
      await initBackend({ log: null, fastKernels: false });
      const rng = new Rng(7);
      const fill = (n: number) => Float32Array.from({ length: n }, () => rng.next() - 0.5);
      const x = tf.tensor4d(fill(2 * 9 * 9 * 3), [2, 9, 9, 3]);
      const w = tf.tensor4d(fill(3 * 3 * 3 * 4), [3, 3, 3, 4]);
      const stock = await tf.conv2d(x, w, 1, "same", "NHWC", 2).data();
      registerFastKernels();
      resetFastConvStats();
      const y = tf.conv2d(x, w, 1, "same", "NHWC", 2);
      assert.equal(convGemmStats.forward, 0, "a dilated conv must use the stock kernel");
      assert.ok(relErr(await y.data() as Float32Array, stock as Float32Array) <= 1e-6);
      // tf.layers' FusedConv2D: plain (no bias, no activation) takes the fast forward...
      const plain = tf.fused.conv2d({ x, filter: w, strides: 2, pad: 1 });
      assert.equal(convGemmStats.forward, 1, "a plain fused conv must use the fast kernel");
      unregisterFastKernels();
      const plainStock = tf.conv2d(x, w, 2, 1);
      assert.ok(
        relErr(await plain.data() as Float32Array, await plainStock.data() as Float32Array) <= 1e-4,
      );
      // ...one with a bias and an activation stays on the stock kernel.
      const bias = tf.tensor1d([0.1, -0.2, 0.3, 0]);
      const fusedStock = tf.fused.conv2d({
        x,
        filter: w,
        strides: 1,
        pad: 1,
        bias,
        activation: "relu",
      });
      registerFastKernels();
      resetFastConvStats();
      const fused = tf.fused.conv2d({ x, filter: w, strides: 1, pad: 1, bias, activation: "relu" });
      assert.equal(convGemmStats.forward, 0);
      assert.ok(
        relErr(await fused.data() as Float32Array, await fusedStock.data() as Float32Array) <= 1e-6,
      );
      tf.dispose([x, w, y, plain, plainStock, bias, fusedStock, fused]);
    } finally {
      unregisterFastKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

/** Forward and gradients of `sum(conv2d(x, w, 3, 0, "round") * g)`: `dy` outgrows the attrs. */
function roundedConv(): Promise<Float32Array[]> {
  const c = { batch: 2, h: 8, w: 6, cin: 3, cout: 4, k: 3 };
  return convAndGrads(c, 5, c.cin, (x, w) => tf.conv2d(x, w, 3, 0, "NHWC", 1, "round"));
}

Deno.test({
  name: "fast conv kernels: a dy not shaped as the attributes' output goes to the stock kernel",
  ignore: !hasAdapter,
  async fn() {
    try {
      // "round" gives 3 output rows of 8 at stride 3; tfjs's gradient drops the rounding mode,
      // so its kernels' attributes say 2 rows while dy has 3.
      await initBackend({ log: null, fastKernels: false });
      const stock = await roundedConv();
      registerFastKernels();
      resetFastConvStats();
      const fast = await roundedConv();
      assert.equal(convGemmStats.forward, 2, "the forward is the GEMM's");
      assert.equal(convGemmStats.inputGrad + convGemmStats.filterGrad, 0, "gradients are stock");
      for (const j of [0, 1, 2]) assert.ok(relErr(fast[j], stock[j]) <= 1e-5, `result ${j}`);
      // conv2dTranspose of a dy smaller than the output shape asks for (3 rows, not 4).
      const rng = new Rng(3);
      const fill = (n: number) => Float32Array.from({ length: n }, () => rng.next() - 0.5);
      const dy = tf.tensor4d(fill(1 * 3 * 3 * 4), [1, 3, 3, 4]);
      const w = tf.tensor4d(fill(3 * 3 * 2 * 4), [3, 3, 2, 4]);
      resetFastConvStats();
      const t = tf.conv2dTranspose(dy, w, [1, 7, 7, 2], 2, "same");
      assert.equal(convGemmStats.inputGrad, 0);
      const got = await t.data() as Float32Array;
      unregisterFastKernels();
      const u = tf.conv2dTranspose(dy, w, [1, 7, 7, 2], 2, "same");
      assert.deepEqual(got, await u.data() as Float32Array);
      tf.dispose([dy, w, t, u]);
    } finally {
      unregisterFastKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

Deno.test({
  name: "fast conv kernels: register and unregister are idempotent and restore stock",
  ignore: !hasAdapter,
  async fn() {
    await initBackend({ log: null, fastKernels: false });
    const before = CONV_KERNEL_NAMES.map((n) => tf.getKernel(n, "webgpu")?.kernelFunc);
    registerFastKernels();
    registerFastKernels();
    for (const n of CONV_KERNEL_NAMES) assert.ok(ownKernelRegistered(n), n);
    unregisterFastKernels();
    unregisterFastKernels();
    for (const n of CONV_KERNEL_NAMES) assert.ok(!ownKernelRegistered(n), n);
    const after = CONV_KERNEL_NAMES.map((n) => tf.getKernel(n, "webgpu")?.kernelFunc);
    assert.deepEqual(after, before);
    registerFastKernels({ kernels: ["Conv2DBackpropFilter"] });
    assert.ok(ownKernelRegistered("Conv2DBackpropFilter"));
    assert.ok(!ownKernelRegistered("Conv2D"));
    unregisterFastKernels();
    await initBackend({ backend: "cpu", log: null });
  },
});
