/**
 * Every shader our kernels make compiles under Chromium's WGSL compiler (Tint), not only under
 * Deno's (naga): the two differ (Tint rejects an integer division by a constant zero, and a
 * barrier under a loop whose bounds it cannot prove uniform; naga accepts both).
 *
 * On Deno's webgpu backend, with both kernel profiles, the test runs a forward and gradient of
 * each registered kernel over the shapes that matter (the differential test's kinds of cases:
 * 1x1 and strided convolutions with an empty stride phase, odd rounding, depthwise, grouped,
 * batch norm, squeeze-excite) and a training step, an evaluation batch and a replayed step of
 * resnet20, resnet20-convgru and regnet400mf (SGD, running statistics, the multi-tensor kernels),
 * recording the WGSL of every shader module made (`GPUDevice.prototype.createShaderModule`
 * wrapped, here only) with the kernel that made it. The distinct modules then go to a Chromium
 * page served from 127.0.0.1, which compiles each (`createShaderModule` and `getCompilationInfo`
 * inside a validation error scope; `createComputePipelineAsync` for the smallest module of each
 * kernel): no error, no warning. Every kernel of `webgpu/kernels/list.ts` must have made one.
 *
 * @module
 */
import assert from "node:assert/strict";
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { createModel } from "../models/registry.ts";
import { batchNormTraining } from "../ops/batchnorm.ts";
import { conv2d as opsConv2d } from "../ops/conv.ts";
import { squeezeExcitation } from "../ops/squeeze_excite.ts";
import { CapturedTrainStep } from "../training/captured.ts";
import { SGD } from "../training/optimizer.ts";
import { evalBatch, trainStep } from "../training/step.ts";
import { Rng } from "../util/rng.ts";
import { KERNELS } from "../webgpu/kernels/list.ts";
import { registerFastKernels, unregisterFastKernels } from "../webgpu/install.ts";
import { registerWebGpuFactory } from "../webgpu/runtime/tfjs.ts";
import { CHROMIUM_MISSING, hasChromium, launchChromium, type Page } from "./support/chromium.ts";
import { hasAdapter } from "./support/gpu.ts";

/** One distinct shader module and the kernels (or direct-kernel keys) that made it. */
interface Shader {
  code: string;
  kernels: string[];
  /** Also build its pipeline (SwiftShader's code generation: the slow part). */
  pipeline: boolean;
}

/** What the page reports of one module that failed. */
interface Failure {
  kernels: string[];
  messages: string[];
}

/** Uniform [-1, 1) values. */
function fill(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
}

/** Outputs of `f` and the gradients of the sum of its outputs by every input, read back. */
async function forwardAndGrads(inputs: tf.Tensor[], f: (...xs: tf.Tensor[]) => tf.Tensor[]) {
  const outs = tf.tidy(() => {
    const ys = f(...inputs);
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.addN(f(...xs).map((y) => y.sum())))(inputs);
    return [...ys, ...grads];
  });
  await Promise.all(outs.map((t) => t.data()));
  tf.dispose([...outs, ...inputs]);
}

/** A random tensor of a shape. */
function rand(rng: Rng, shape: number[]): tf.Tensor {
  return tf.tensor(fill(rng, shape.reduce((a, b) => a * b, 1)), shape);
}

/** Forward and gradients of each kernel over the kinds of shapes the differential test draws. */
async function kernelCases(rng: Rng): Promise<void> {
  type Pad = "same" | "valid" | number;
  const convs: [number[], number, number, number, Pad, ("floor" | "round" | "ceil")?][] = [
    [[2, 8, 8, 4], 1, 8, 2, "valid"], // 1x1 stride 2: a stride phase no tap reaches
    [[2, 9, 9, 8], 3, 16, 2, 1],
    [[2, 8, 6, 3], 3, 4, 3, 0, "round"],
    [[1, 7, 9, 4], 3, 5, 2, 1, "ceil"],
    [[2, 7, 5, 3], 3, 16, 1, "same"],
    [[1, 2, 1, 4], 3, 8, 2, 1], // a stride phase with no rows
  ];
  for (const [xs, k, cout, stride, pad, rounding] of convs) {
    await forwardAndGrads([rand(rng, xs), rand(rng, [k, k, xs[3], cout])], (x, w) => [
      tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad, "NHWC", 1, rounding),
    ]);
  }
  await forwardAndGrads([rand(rng, [2, 7, 7, 8]), rand(rng, [3, 3, 8, 8]), rand(rng, [8])], (
    x,
    w,
    b,
  ) => [
    tf.fused.conv2d({
      x: x as tf.Tensor4D,
      filter: w as tf.Tensor4D,
      bias: b,
      strides: 2,
      pad: 1,
      activation: "relu",
    }),
  ]);
  for (const [xs, k, mult, stride] of [[[2, 9, 8, 8], 3, 2, 2], [[1, 6, 5, 3], 1, 3, 2]] as const) {
    await forwardAndGrads([rand(rng, [...xs]), rand(rng, [k, k, xs[3], mult])], (x, w) => [
      tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, "same"),
    ]);
  }
  for (
    const [xs, k, groups, go, stride, pad] of [[[2, 8, 6, 8], 3, 2, 3, 3, 0], [
      [2, 9, 9, 16],
      3,
      2,
      8,
      2,
      1,
    ]]
  ) {
    const x = xs as number[], gi = x[3] / (groups as number);
    const spec = { stride: stride as number, padding: pad as number, groups: groups as number };
    await forwardAndGrads(
      [
        rand(rng, x),
        rand(rng, [k as number, k as number, gi, (groups as number) * (go as number)]),
      ],
      (a, f) => [opsConv2d(a as tf.Tensor4D, f as tf.Tensor4D, spec)],
    );
  }
  for (const [xs, residual] of [[[2, 5, 6, 8], true], [[1, 3, 4, 17], false]] as const) {
    const ch = xs[3];
    const inputs = [rand(rng, [...xs]), rand(rng, [ch]), rand(rng, [ch])];
    if (residual) inputs.push(rand(rng, [...xs]));
    await forwardAndGrads(inputs, (x, gamma, beta, shortcut) => {
      const { y, stats } = batchNormTraining(
        x as tf.Tensor4D,
        gamma as tf.Tensor1D,
        beta as tf.Tensor1D,
        1e-5,
        { activation: "relu", shortcut: shortcut as tf.Tensor4D | undefined },
      );
      return [y, stats.mean, stats.variance];
    });
  }
  for (const [xs, s] of [[[2, 3, 5, 8], 2], [[1, 4, 4, 17], 3]] as const) {
    const ch = xs[3];
    await forwardAndGrads(
      [rand(rng, [...xs]), rand(rng, [ch, s]), rand(rng, [s]), rand(rng, [s, ch]), rand(rng, [ch])],
      (x, w1, b1, w2, b2) => [
        squeezeExcitation(x as tf.Tensor4D, {
          w1: w1 as tf.Tensor2D,
          b1: b1 as tf.Tensor1D,
          w2: w2 as tf.Tensor2D,
          b2: b2 as tf.Tensor1D,
        }),
      ],
    );
  }
}

/** Models whose layers the check covers. */
const MODELS = ["resnet20", "resnet20-convgru", "regnet400mf"];

/**
 * A training step, an evaluation batch and three captured steps (eager, capture, replay) of each
 * model, on 32x32 images, batch 1 (the `cpu` profile's register GEMMs stay 4-row blocks, which
 * compile in well under a second on SwiftShader).
 */
async function modelSteps(rng: Rng): Promise<void> {
  for (const name of MODELS) {
    const model = createModel(name, { inputSize: 32, seed: 1 });
    const opt = new SGD({ lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
    const x = rand(rng, [1, 32, 32, 3]) as tf.Tensor4D, y = tf.tensor1d([3], "int32");
    await trainStep(model, opt, x, y);
    const e = evalBatch(model, x, y);
    await e.lossSum.data();
    tf.dispose([e.logits, e.lossSum, e.correct]);
    const captured = new CapturedTrainStep(model, opt);
    for (let i = 0; i < 3; i++) {
      const r = captured.run(x, y);
      await r.loss.data();
      tf.dispose([r.loss, r.correct]);
    }
    captured.dispose();
    tf.dispose([x, y]);
    model.dispose();
  }
}

/**
 * Runs `f` on the webgpu backend while recording each shader module's WGSL and the kernel that
 * made it: the direct kernels' label (their key), else the innermost engine kernel running.
 */
async function recordShaders(into: Map<string, Set<string>>, f: () => Promise<void>) {
  const engine = tf.engine() as unknown as {
    runKernel: (name: string, ...rest: unknown[]) => unknown;
  };
  const running: string[] = [];
  const runKernel = engine.runKernel;
  engine.runKernel = function (this: unknown, name: string, ...rest: unknown[]) {
    running.push(name);
    try {
      return runKernel.call(this, name, ...rest);
    } finally {
      running.pop();
    }
  };
  const proto = GPUDevice.prototype;
  const create = proto.createShaderModule;
  proto.createShaderModule = function (this: GPUDevice, d: GPUShaderModuleDescriptor) {
    const who = running.at(-1) ?? d.label ?? "(no kernel)";
    const kernels = into.get(d.code) ?? new Set<string>();
    kernels.add(who);
    into.set(d.code, kernels);
    return create.call(this, d);
  };
  try {
    await f();
  } finally {
    proto.createShaderModule = create;
    engine.runKernel = runKernel;
  }
}

/**
 * Compiles each module in the page, with the adapter's own limits: the messages of type error or
 * warning, a failed pipeline, and the validation errors, per module that has any. Runs in the
 * browser (serialized by puppeteer), so it names nothing outside itself.
 */
async function compileInPage(shaders: Shader[]): Promise<Failure[] | string> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return "no WebGPU adapter in the page";
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    },
  });
  const checks = shaders.map(async (s) => {
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: s.code });
    const pipeline = s.pipeline
      ? device.createComputePipelineAsync({ layout: "auto", compute: { module } })
        .then(() => null, (e: Error) => `pipeline: ${e.message}`)
      : null;
    const scope = device.popErrorScope();
    const messages = (await module.getCompilationInfo()).messages
      .filter((m) => m.type === "error" || m.type === "warning")
      .map((m) => `${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`);
    const failed = await pipeline;
    if (failed) messages.push(failed);
    const error = await scope;
    if (error) messages.push(`validation: ${error.message}`);
    return { kernels: s.kernels, messages };
  });
  const results = await Promise.all(checks);
  device.destroy();
  return results.filter((r) => r.messages.length > 0);
}

/** The adapter's storage-buffer limit in Chromium, so that Deno's kernels fit the browser's. */
async function chromiumStorageBindings(
  page: Page,
): Promise<number> {
  return await page.evaluate(async () =>
    (await navigator.gpu.requestAdapter())?.limits.maxStorageBuffersPerShaderStage ?? 0
  );
}

Deno.test({
  name: hasChromium
    ? "browser: every shader the kernels make compiles in Chromium (Tint) without an error"
    : `browser: every shader the kernels make compiles in Chromium (Tint) ${CHROMIUM_MISSING}`,
  ignore: !hasChromium || !hasAdapter,
  async fn() {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () =>
        new Response("<!doctype html><title>wgsl</title>", {
          headers: { "content-type": "text/html" },
        }),
    );
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") pageErrors.push(m.text());
      });
      page.on("pageerror", (e) => pageErrors.push(String(e)));
      await page.goto(`http://127.0.0.1:${server.addr.port}/`);
      const bindings = await chromiumStorageBindings(page);
      assert.ok(bindings > 0, "Chromium offers no WebGPU adapter");

      // Deno's device gets the browser's storage-buffer limit: the multi-tensor kernels size
      // their dispatches by it, as they do in the browser.
      const t0 = performance.now();
      const found = new Map<string, Set<string>>();
      // Recording starts before the backend does: the WebGPU layer's own wrapper of the
      // device's createShaderModule (its error scope) then calls the recording one.
      await recordShaders(found, async () => {
        registerWebGpuFactory(bindings);
        await tf.setBackend("webgpu");
        await initBackend({ log: null, fastKernels: false });
        for (const profile of ["gpu", "cpu"] as const) {
          registerFastKernels({ profile });
          const rng = new Rng(7);
          await kernelCases(rng);
          await modelSteps(rng);
          unregisterFastKernels();
        }
      });
      const collected = performance.now() - t0;
      // Every module goes through Tint (parse, resolve, uniformity: where both bugs were); the
      // smallest of each kernel also through SwiftShader's code generation, which takes seconds
      // for the large ones (all of them: several minutes on two cores).
      const shaders = [...found].map(([code, kernels]) => ({
        code,
        kernels: [...kernels],
        pipeline: false,
      }));
      const smallest = new Map<string, Shader>();
      for (const s of shaders) {
        for (const k of s.kernels) {
          const had = smallest.get(k);
          if (!had || s.code.length < had.code.length) smallest.set(k, s);
        }
      }
      for (const s of smallest.values()) s.pipeline = true;
      const names = new Set(shaders.flatMap((s) => s.kernels));
      const missing = KERNELS.map((k) => k.kernelName).filter((n) => !names.has(n));
      assert.deepEqual(missing, [], `kernels of list.ts whose shaders the test never made`);

      const t1 = performance.now();
      const failures = await page.evaluate(compileInPage, shaders);
      const compiled = performance.now() - t1;
      console.log(
        `${shaders.length} distinct shader modules (${names.size} kernels, ` +
          `${shaders.filter((s) => s.pipeline).length} pipelines built): ` +
          `collected on Deno in ${(collected / 1000).toFixed(1)} s, ` +
          `compiled in Chromium in ${(compiled / 1000).toFixed(1)} s`,
      );
      assert.equal(typeof failures, "object", String(failures));
      const lines = (failures as Failure[]).map((f) =>
        `${f.kernels.join(", ")}:\n  ${f.messages.join("\n  ")}`
      );
      assert.deepEqual(lines, [], `shaders Chromium rejects:\n${lines.join("\n")}`);
      assert.deepEqual(pageErrors, [], "page errors");
    } finally {
      await browser.close();
      await server.shutdown();
      await initBackend({ backend: "cpu", log: null });
    }
  },
});
