/**
 * Micro-benchmark: milliseconds per call of tfjs's stock webgpu convolution kernels against the
 * fast ones of this folder, for ResNet20's convolution shapes, on whatever WebGPU adapter Deno
 * offers (llvmpipe on a CPU-only machine).
 *
 * Usage: `deno run --allow-read --allow-env bench/conv.ts [--batch 64] [--iters 3]
 * [--ops forward,inputGrad,filterGrad,dwFilterGrad] [--only stock|fast] [--shapes 0,3] [--target 512]`
 * (`--shapes` picks rows of {@link RESNET20_SHAPES}; `--target` is the split-K workgroup target).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { type FlagSpec, helpText, parseFlags, runCli } from "../cli/args.ts";
import { registerFastKernels, unregisterFastKernels } from "../webgpu/install.ts";

/** One convolution of the benchmark: input `[batch, h, w, cin]`, filter `k x k x cin x cout`. */
export interface BenchShape {
  /** Row label. */
  name: string;
  /** Input height = width. */
  hw: number;
  /** Input channels. */
  cin: number;
  /** Output channels. */
  cout: number;
  /** Kernel size. */
  k: number;
  /** Stride. */
  stride: number;
  /** Padding as the models give it. */
  pad: number | "valid";
}

/** ResNet20's convolution shapes (CIFAR, widths 16/32/64, 1x1 stride-2 projection shortcuts). */
export const RESNET20_SHAPES: BenchShape[] = [
  { name: "stem 32x32x3->16", hw: 32, cin: 3, cout: 16, k: 3, stride: 1, pad: 1 },
  { name: "32x32x16->16", hw: 32, cin: 16, cout: 16, k: 3, stride: 1, pad: 1 },
  { name: "32x32x16->32 s2", hw: 32, cin: 16, cout: 32, k: 3, stride: 2, pad: 1 },
  { name: "32x32x16->32 1x1 s2", hw: 32, cin: 16, cout: 32, k: 1, stride: 2, pad: "valid" },
  { name: "16x16x32->32", hw: 16, cin: 32, cout: 32, k: 3, stride: 1, pad: 1 },
  { name: "16x16x32->64 s2", hw: 16, cin: 32, cout: 64, k: 3, stride: 2, pad: 1 },
  { name: "16x16x32->64 1x1 s2", hw: 16, cin: 32, cout: 64, k: 1, stride: 2, pad: "valid" },
  { name: "8x8x64->64", hw: 8, cin: 64, cout: 64, k: 3, stride: 1, pad: 1 },
];

/** Depthwise 3x3 shapes of RegNetY-400MF's widths (48, 104, 208, 440) at CIFAR resolutions. */
export const DEPTHWISE_SHAPES: BenchShape[] = [
  { name: "dw 16x16x48", hw: 16, cin: 48, cout: 48, k: 3, stride: 1, pad: 1 },
  { name: "dw 16x16x104 s2", hw: 16, cin: 104, cout: 104, k: 3, stride: 2, pad: 1 },
  { name: "dw 8x8x208", hw: 8, cin: 208, cout: 208, k: 3, stride: 1, pad: 1 },
  { name: "dw 4x4x440", hw: 4, cin: 440, cout: 440, k: 3, stride: 1, pad: 1 },
];

/** The ops the benchmark times (`dwFilterGrad`: the depthwise filter gradient). */
export const OPS = ["forward", "inputGrad", "filterGrad", "dwFilterGrad"] as const;
/** An op the benchmark times. */
export type Op = typeof OPS[number];

function callOp(op: Op, s: BenchShape, x: tf.Tensor4D, w: tf.Tensor4D, dy: tf.Tensor4D): tf.Tensor {
  const attrs = { strides: s.stride, pad: s.pad, dataFormat: "NHWC", dilations: 1 };
  if (op === "dwFilterGrad") {
    return tf.engine().runKernel("DepthwiseConv2dNativeBackpropFilter", { x, dy }, {
      ...attrs,
      filterShape: w.shape,
    }) as tf.Tensor;
  }
  if (op === "forward") return tf.conv2d(x, w, s.stride, s.pad);
  if (op === "inputGrad") {
    return tf.engine().runKernel("Conv2DBackpropInput", { dy, filter: w }, {
      ...attrs,
      inputShape: x.shape,
    }) as tf.Tensor;
  }
  return tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, {
    ...attrs,
    filterShape: w.shape,
  }) as tf.Tensor;
}

/**
 * Times `iters` back-to-back calls of one op after one warm-up call (which compiles the
 * pipeline), waiting for the GPU at the end.
 *
 * @param op the kernel
 * @param s the shape
 * @param batch batch size
 * @param iters timed calls
 * @returns milliseconds per call
 */
export async function timeOp(op: Op, s: BenchShape, batch: number, iters: number): Promise<number> {
  const x = tf.randomNormal([batch, s.hw, s.hw, s.cin]) as tf.Tensor4D;
  const depthwise = op === "dwFilterGrad";
  const w = tf.randomNormal([s.k, s.k, s.cin, depthwise ? s.cout / s.cin : s.cout]) as tf.Tensor4D;
  const y = depthwise
    ? tf.depthwiseConv2d(x, w, s.stride, s.pad)
    : tf.conv2d(x, w, s.stride, s.pad);
  const dy = tf.randomNormal(y.shape) as tf.Tensor4D;
  y.dispose();
  const warm = callOp(op, s, x, w, dy);
  await warm.data();
  warm.dispose();
  const t0 = performance.now();
  const outs: tf.Tensor[] = [];
  for (let i = 0; i < iters; i++) outs.push(callOp(op, s, x, w, dy));
  await outs[outs.length - 1].data();
  const ms = (performance.now() - t0) / iters;
  tf.dispose([...outs, x, w, dy]);
  return ms;
}

const FLAGS: Record<string, FlagSpec> = {
  batch: { kind: "int", help: "batch size (default 64)" },
  iters: { kind: "int", help: "timed calls per op after one warm-up (default 3)" },
  ops: { kind: "string", help: `ops, comma-separated (default all); valid: ${OPS.join(", ")}` },
  only: { kind: "choice", choices: ["stock", "fast"], help: "time one side only" },
  shapes: { kind: "ints", help: "indices of the shapes to time, comma-separated (default all)" },
  target: { kind: "int", help: "split-K target workgroups of the fast kernels" },
  help: { kind: "bool", help: "show this help" },
};

async function main(args: string[]): Promise<void> {
  const { values: v } = parseFlags(args, FLAGS);
  if (v.help) {
    console.log(helpText("usage: deno run --allow-read --allow-env bench/conv.ts [flags]", FLAGS));
    return;
  }
  const values = {
    only: (v.only as string | undefined) ?? "",
    shapes: ((v.shapes as number[] | undefined) ?? []).join(","),
    target: v.target === undefined ? "" : String(v.target),
  };
  const batch = (v.batch as number | undefined) ?? 64, iters = (v.iters as number | undefined) ?? 3;
  const ops = ((v.ops as string | undefined) ?? OPS.join(",")).split(",") as Op[];
  for (const op of ops) {
    if (!OPS.includes(op)) throw new Error(`--ops: unknown op "${op}"; valid: ${OPS.join(", ")}`);
  }
  const info = await initBackend({ log: null });
  if (info.backend !== "webgpu") throw new Error("bench_conv: no WebGPU adapter");
  const pickShapes = (list: BenchShape[]) =>
    values.shapes === "" ? list : values.shapes.split(",").map((i) => list[Number(i)]).filter(
      (x) => x !== undefined,
    );
  console.log(`adapter: ${info.adapter}; batch ${batch}; ${iters} timed calls after 1 warm-up`);
  console.log(
    `${"shape".padEnd(22)} ${"op".padEnd(12)} ${"stock ms".padStart(10)} ` +
      `${"fast ms".padStart(10)} ${"speedup".padStart(8)}`,
  );
  const rows: [BenchShape, Op][] = [];
  for (const s of pickShapes(RESNET20_SHAPES)) {
    for (const op of ops) if (op !== "dwFilterGrad") rows.push([s, op]);
  }
  if (ops.includes("dwFilterGrad")) {
    for (const s of pickShapes(DEPTHWISE_SHAPES)) rows.push([s, "dwFilterGrad"]);
  }
  for (const [s, op] of rows) {
    let stock = NaN, fast = NaN;
    if (values.only !== "fast") {
      unregisterFastKernels();
      stock = await timeOp(op, s, batch, iters);
    }
    if (values.only !== "stock") {
      registerFastKernels(
        values.target === "" ? {} : { split: { targetWorkgroups: Number(values.target) } },
      );
      fast = await timeOp(op, s, batch, iters);
      unregisterFastKernels();
    }
    console.log(
      `${s.name.padEnd(22)} ${op.padEnd(12)} ${stock.toFixed(1).padStart(10)} ` +
        `${fast.toFixed(1).padStart(10)} ${(stock / fast).toFixed(2).padStart(7)}x`,
    );
  }
}

if (import.meta.main) await runCli(() => main(Deno.args));
