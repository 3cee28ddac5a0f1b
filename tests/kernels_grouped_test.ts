import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { countDispatches, counters } from "../webgpu/runtime/counters.ts";
import { gpuErrors, hasAdapter, relErr } from "./support/gpu.ts";
import { convAndGrads, type ConvShape } from "./support/conv.ts";
import { conv2d, GROUPED_CONV2D, type GroupedConvAttrs, groupedConvInfo } from "../ops/conv.ts";
import { kernelAccepts } from "../ops/support.ts";
import {
  GROUPED_CONV_KERNELS,
  groupedConvFilterGrad,
  groupedConvSupported,
} from "../webgpu/kernels/grouped_conv.ts";
import { registerKernels, unregisterKernels } from "../webgpu/kernels/registry.ts";
import { defaultPolicies } from "../webgpu/install.ts";

/** The grouped-convolution kernels alone (the rest of the WebGPU layer as it is). */
const registerGroupedConvKernels = () =>
  registerKernels(GROUPED_CONV_KERNELS, defaultPolicies("gpu"));
const unregisterGroupedConvKernels = () => unregisterKernels(GROUPED_CONV_KERNELS);
const groupedConvAvailable = (x: number[], w: number[], attrs: GroupedConvAttrs) =>
  kernelAccepts(GROUPED_CONV2D, [x, w], attrs);
const resetGroupedConvStats = () => counters.reset("groupedConv");
const groupedConvStats = () => counters.read("groupedConv");

interface Case extends ConvShape {
  groups: number;
  stride: number;
  pad: number;
}

/** Output, input gradient and filter gradient of `sum(conv2d(x, w) * g)` through `ops/conv.ts`. */
function groupedAndGrads(c: Case, seed: number): Promise<Float32Array[]> {
  const spec = { stride: c.stride, padding: c.pad, groups: c.groups };
  return convAndGrads(c, seed, c.cin / c.groups, (x, w) => conv2d(x, w, spec));
}

/** RegNetY-like shapes (group width 8) and odd ones. */
const CASES: Case[] = [
  { batch: 2, h: 9, w: 9, cin: 48, cout: 48, groups: 6, k: 3, stride: 1, pad: 1 },
  { batch: 1, h: 15, w: 15, cin: 48, cout: 48, groups: 6, k: 3, stride: 2, pad: 1 },
  { batch: 3, h: 7, w: 7, cin: 104, cout: 104, groups: 13, k: 3, stride: 1, pad: 1 },
  { batch: 4, h: 9, w: 7, cin: 104, cout: 104, groups: 13, k: 3, stride: 2, pad: 1 },
  { batch: 2, h: 7, w: 9, cin: 208, cout: 208, groups: 26, k: 3, stride: 1, pad: 1 },
  // Long reduction: the filter gradient is split over several workgroups per group.
  { batch: 4, h: 15, w: 15, cin: 16, cout: 16, groups: 2, k: 3, stride: 1, pad: 1 },
  // Group width 3, more outputs than inputs per group, a 1x1 grouped conv, wide groups.
  { batch: 2, h: 7, w: 7, cin: 9, cout: 9, groups: 3, k: 3, stride: 2, pad: 1 },
  { batch: 1, h: 9, w: 5, cin: 12, cout: 18, groups: 3, k: 3, stride: 1, pad: 0 },
  { batch: 3, h: 7, w: 9, cin: 16, cout: 24, groups: 4, k: 1, stride: 2, pad: 0 },
  // Groups wider than one invocation's (forward) or one workgroup's (filter grad) channels.
  { batch: 1, h: 5, w: 6, cin: 16, cout: 40, groups: 2, k: 3, stride: 1, pad: 2 },
];

Deno.test({
  name: "grouped conv kernel: output, dx and dW match the depthwise path on webgpu and cpu",
  ignore: !hasAdapter,
  async fn() {
    try {
      await initBackend({ log: null, fastKernels: false });
      const errors = gpuErrors();
      for (const [i, c] of CASES.entries()) {
        const label = JSON.stringify(c);
        await initBackend({ log: null, fastKernels: false });
        registerGroupedConvKernels();
        resetGroupedConvStats();
        const fast = await groupedAndGrads(c, i);
        assert.equal(groupedConvStats().forward, 2, `forward kernel not used for ${label}`);
        assert.equal(
          groupedConvStats().inputGrad,
          1,
          `input-gradient kernel not used for ${label}`,
        );
        assert.equal(groupedConvStats().filterGrad, 1, `filter-gradient kernel not used ${label}`);
        unregisterGroupedConvKernels();
        resetGroupedConvStats();
        const depthwise = await groupedAndGrads(c, i);
        assert.equal(groupedConvStats().forward, 0, "the depthwise run used the kernel");
        await initBackend({ backend: "cpu", log: null });
        const cpu = await groupedAndGrads(c, i);
        for (const [j, what] of ["output", "input grad", "filter grad"].entries()) {
          const vsGpu = relErr(fast[j], depthwise[j]), vsCpu = relErr(fast[j], cpu[j]);
          assert.ok(vsGpu <= 1e-5, `${what} vs depthwise webgpu: ${vsGpu} for ${label}`);
          assert.ok(vsCpu <= 1e-5, `${what} vs depthwise cpu: ${vsCpu} for ${label}`);
        }
      }
      assert.deepEqual(errors, []);
    } finally {
      unregisterGroupedConvKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

/** Dispatches of one grouped conv forward and backward. */
function dispatchesOf(c: Case): Promise<number> {
  return countDispatches(() => groupedAndGrads(c, 7));
}

Deno.test({
  name: "grouped conv kernel: fewer dispatches per forward and backward than the depthwise path",
  ignore: !hasAdapter,
  async fn() {
    try {
      await initBackend({ log: null, fastKernels: false });
      const c = CASES[3];
      const depthwise = await dispatchesOf(c);
      registerGroupedConvKernels();
      const fast = await dispatchesOf(c);
      // Two forwards, one input and one (unsplit) filter gradient: 4 with the kernel. The
      // helper's own ops (mul, sum, the gradient seed and its product) add 4 in both runs.
      assert.ok(fast <= 8, `dispatches with the kernel: ${fast}`);
      assert.ok(depthwise - fast >= 8, `dispatches: kernel ${fast}, depthwise ${depthwise}`);
    } finally {
      unregisterGroupedConvKernels();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});

Deno.test("grouped conv kernel: availability follows the backend's registry", async () => {
  await initBackend({ backend: "cpu", log: null });
  const attrs = { stride: 1, pad: 1, groups: 6 };
  assert.equal(groupedConvAvailable([1, 7, 7, 48], [3, 3, 8, 48], attrs), false);
  assert.equal(tf.getKernel(GROUPED_CONV2D, "cpu"), undefined);
  if (!hasAdapter) return;
  try {
    await initBackend({ log: null, fastKernels: false });
    assert.equal(groupedConvAvailable([1, 7, 7, 48], [3, 3, 8, 48], attrs), false);
    registerGroupedConvKernels();
    assert.equal(groupedConvAvailable([1, 7, 7, 48], [3, 3, 8, 48], attrs), true);
    // Mismatched channels are not a grouped convolution.
    assert.equal(groupedConvAvailable([1, 7, 7, 48], [3, 3, 7, 48], attrs), false);
  } finally {
    unregisterGroupedConvKernels();
    await initBackend({ backend: "cpu", log: null });
  }
});

Deno.test("grouped conv kernel: shape facts, limits and the split of the filter gradient", () => {
  const c = groupedConvInfo([4, 15, 15, 48], [3, 3, 8, 48], { stride: 2, pad: 1, groups: 6 });
  assert.deepEqual([c.outH, c.outW, c.gi, c.go], [8, 8, 8, 8]);
  assert.throws(
    () => groupedConvInfo([1, 7, 7, 48], [3, 3, 8, 50], { stride: 1, pad: 1, groups: 6 }),
    /do not split/,
  );
  assert.equal(groupedConvSupported(c), true);
  // 3x3 taps of 64 input channels per group do not fit the staged filter slice.
  const wide = groupedConvInfo([1, 7, 7, 128], [3, 3, 64, 128], { stride: 1, pad: 1, groups: 2 });
  assert.equal(groupedConvSupported(wide), false);
  const long = groupedConvInfo([8, 32, 32, 48], [3, 3, 8, 48], { stride: 1, pad: 1, groups: 6 });
  const split = groupedConvFilterGrad(long);
  assert.ok(split.splits > 1, `splits ${split.splits}`);
  assert.deepEqual(split.program.outputShape, [split.splits, 3, 3, 8, 48]);
  const one = groupedConvFilterGrad(
    groupedConvInfo([1, 5, 5, 48], [3, 3, 8, 48], { stride: 1, pad: 1, groups: 6 }),
  );
  assert.deepEqual(one.program.outputShape, [3, 3, 8, 48]);
});
