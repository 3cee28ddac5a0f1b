/**
 * DepthwiseConv2dNativeBackpropFilter with the reduction split across workgroups.
 *
 * `dW[kh, kw, c, q] = Σ_{b, oh, ow} x[b, oh·SH − PT + kh·DH, ow·SW − PL + kw·DW, c] ·
 * dy[b, oh, ow, c·CM + q]` (NHWC input, filter `[KH, KW, C, CM]`). There is no product
 * structure to tile (each output channel only meets its own input channel), so each
 * invocation owns one output channel `d = c·CM + q` and all `KH·KW` taps, and walks a strided
 * share of one chunk of the `batch·outH·outW` positions: it reads `dy` once per position and
 * the `KH·KW` input pixels under it. Neighbouring invocations take neighbouring channels, so the
 * reads are contiguous. Every (chunk, lane) writes its own partial filter gradient, and
 * {@link splitKReduce} sums them: no invocation loops over the whole batch.
 *
 * @module
 */
import type { tf, WebGPUBackend } from "../../deps.ts";
import type { ProgramUniforms } from "../runtime/tfjs.ts";
import { program, type ProgramKernel } from "./declare.ts";
import { MAX_WORKGROUPS_PER_DIM } from "./wgsl.ts";
import { chooseSplits, splitKReduce } from "./gemm_program.ts";
import { convGemmStats, DEFAULT_SPLIT_POLICY, type SplitPolicy } from "./conv_gemm.ts";

/** Invocations per workgroup: channel lanes x position lanes. */
const WORKGROUP = 64;

/** The shape facts the partial-sum program's WGSL bakes in. */
const FACTS = [
  "inHeight",
  "inWidth",
  "inChannels",
  "outHeight",
  "outWidth",
  "outChannels",
  "filterHeight",
  "filterWidth",
  "strideHeight",
  "strideWidth",
  "dilationHeight",
  "dilationWidth",
] as const;

/** What the partial-sum program's WGSL depends on: the shape facts, the pads, the lanes. */
type DepthwiseParams = Record<typeof FACTS[number] | "padTop" | "padLeft" | "lanes", number>;

/** The partial-sum program of {@link runDepthwiseFilterGrad}. */
const DEPTHWISE_FILTER_GRAD: ProgramKernel<DepthwiseParams> = {
  name: "dw_filter_grad",
  shader: (p) => ({
    variableNames: ["x", "dy"],
    workgroupSize: [p.lanes, WORKGROUP / p.lanes, 1],
    uniforms: "numPositions : i32, chunk : i32,",
    code: () => depthwiseFilterGradCode(p),
  }),
};

/** Channel lanes of a workgroup for `channels` channels. */
function lanesFor(channels: number): number {
  let lanes = 4;
  while (lanes < channels && lanes < WORKGROUP) lanes *= 2;
  return lanes;
}

/**
 * The partial-sum program for one depthwise convolution: output `[splits · positionLanes,
 * KH·KW, C·CM]`, grid `[channel blocks, 1, splits]`.
 */
function depthwiseFilterGrad(c: tf.backend_util.Conv2DInfo, splits: number) {
  const lanes = lanesFor(c.outChannels);
  const params = { lanes, padTop: c.padInfo.top, padLeft: c.padInfo.left } as DepthwiseParams;
  for (const f of FACTS) params[f] = c[f];
  const positionLanes = WORKGROUP / lanes;
  return program(DEPTHWISE_FILTER_GRAD, params, {
    outputShape: [splits * positionLanes, c.filterHeight * c.filterWidth, c.outChannels],
    dispatchLayout: { x: [2], y: [1], z: [0] },
    dispatch: [Math.ceil(c.outChannels / lanes), 1, splits],
  });
}

function depthwiseFilterGradCode(c: DepthwiseParams): string {
  const lanes = c.lanes, positionLanes = WORKGROUP / c.lanes;
  const taps = c.filterHeight * c.filterWidth, D = c.outChannels;
  const CM = D / c.inChannels;
  const OHW = c.outHeight * c.outWidth;
  return `
      ${"fn main()"} {
        let d = i32(workgroupId.x) * ${lanes} + i32(localId.x);
        let lane = i32(localId.y);
        let split = i32(workgroupId.z);
        let kBegin = split * uniforms.chunk;
        let kEnd = min(uniforms.numPositions, kBegin + uniforms.chunk);
        var acc : array<f32, ${taps}>;
        for (var t = 0; t < ${taps}; t++) { acc[t] = 0.0; }
        if (d < ${D}) {
          let ci = d / ${CM};
          for (var k = kBegin + lane; k < kEnd; k += ${positionLanes}) {
            let b = k / ${OHW};
            let r = k - b * ${OHW};
            let oh = r / ${c.outWidth};
            let ow = r - oh * ${c.outWidth};
            let g = dy[k * ${D} + d];
            let ih0 = oh * ${c.strideHeight} - ${c.padTop};
            let iw0 = ow * ${c.strideWidth} - ${c.padLeft};
            for (var kh = 0; kh < ${c.filterHeight}; kh++) {
              let ih = ih0 + kh * ${c.dilationHeight};
              if (ih < 0 || ih >= ${c.inHeight}) { continue; }
              for (var kw = 0; kw < ${c.filterWidth}; kw++) {
                let iw = iw0 + kw * ${c.dilationWidth};
                if (iw < 0 || iw >= ${c.inWidth}) { continue; }
                let v = x[((b * ${c.inHeight} + ih) * ${c.inWidth} + iw) * ${c.inChannels} + ci];
                acc[kh * ${c.filterWidth} + kw] = fma(v, g, acc[kh * ${c.filterWidth} + kw]);
              }
            }
          }
          let base = (split * ${positionLanes} + lane) * ${taps * D};
          for (var t = 0; t < ${taps}; t++) { result[base + t * ${D} + d] = acc[t]; }
        }
      }`;
}

/**
 * Runs the depthwise filter gradient `[KH, KW, C, CM]`: the split partial sums, then their
 * reduction. `c` is the shape facts of the depthwise convolution (NHWC;
 * `computeConv2DInfo(..., true)`).
 */
export function runDepthwiseFilterGrad(
  backend: WebGPUBackend,
  c: tf.backend_util.Conv2DInfo,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  split: SplitPolicy = DEFAULT_SPLIT_POLICY,
): tf.TensorInfo {
  const positions = c.batchSize * c.outHeight * c.outWidth;
  const blocks = Math.ceil(c.outChannels / lanesFor(c.outChannels));
  const { splits, chunk } = chooseSplits(positions, blocks, {
    ...split,
    maxSplits: MAX_WORKGROUPS_PER_DIM,
  });
  const partialProgram = depthwiseFilterGrad(c, splits);
  const uniforms: ProgramUniforms = [
    { type: "int32", data: [positions] },
    { type: "int32", data: [chunk] },
  ];
  convGemmStats.depthwiseFilterGrad++;
  const partial = backend.runWebGPUProgram(partialProgram, [x, dy], "float32", uniforms);
  const reduce = splitKReduce(c.filterShape);
  const out = backend.runWebGPUProgram(reduce, [partial], "float32", [
    { type: "int32", data: [partialProgram.outputShape[0]] },
  ]);
  backend.disposeData(partial.dataId);
  return out;
}
