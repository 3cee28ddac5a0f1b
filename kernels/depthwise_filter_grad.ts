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
 * {@link SplitKReduceProgram} sums them: no invocation loops over the whole batch.
 *
 * @module
 */
import type { tf, WebGPUBackend } from "../deps.ts";
import { type ProgramUniforms, SplitKReduceProgram, type WebGPUProgram } from "./gemm_program.ts";
import { fastConvStats } from "./conv_gemm.ts";

/** Split knobs of the depthwise filter gradient. */
export interface DepthwiseSplit {
  /** Workgroups to aim for (default 1024). */
  targetWorkgroups: number;
  /** Shortest run of positions one split gets (default 256). */
  minChunk: number;
}

/** The default split of the depthwise filter gradient. */
export const DEFAULT_DEPTHWISE_SPLIT: DepthwiseSplit = { targetWorkgroups: 1024, minChunk: 256 };

/** Invocations per workgroup: channel lanes x position lanes. */
const WORKGROUP = 64;

/** The partial-sum program of {@link runDepthwiseFilterGrad}. */
export class DepthwiseFilterGradProgram implements WebGPUProgram {
  /** Input buffer names. */
  variableNames = ["x", "dy"];
  /** `[splits · positionLanes, KH·KW, C·CM]`. */
  outputShape: number[];
  /** Cache key. */
  shaderKey: string;
  /** Dispatch axes: x = channel blocks, z = splits. */
  dispatchLayout = { x: [2], y: [1], z: [0] };
  /** Workgroups per dimension. */
  dispatch: [number, number, number];
  /** `[channel lanes, position lanes, 1]`. */
  workgroupSize: [number, number, number];
  /** Program-defined uniforms. */
  uniforms = "numPositions : i32, chunk : i32,";
  private readonly c: tf.backend_util.Conv2DInfo;

  /**
   * Builds the partial-sum program for one depthwise convolution.
   *
   * @param c shape facts of the depthwise convolution (NHWC)
   * @param splits number of position chunks
   */
  constructor(c: tf.backend_util.Conv2DInfo, splits: number) {
    this.c = c;
    const channels = c.outChannels;
    let lanes = 4;
    while (lanes < channels && lanes < WORKGROUP) lanes *= 2;
    const positionLanes = WORKGROUP / lanes;
    this.workgroupSize = [lanes, positionLanes, 1];
    this.dispatch = [Math.ceil(channels / lanes), 1, splits];
    this.outputShape = [splits * positionLanes, c.filterHeight * c.filterWidth, channels];
    this.shaderKey = "fastconv_dwfilter_" + [
      c.inHeight,
      c.inWidth,
      c.inChannels,
      c.outHeight,
      c.outWidth,
      channels,
      c.filterHeight,
      c.filterWidth,
      c.strideHeight,
      c.strideWidth,
      c.dilationHeight,
      c.dilationWidth,
      c.padInfo.top,
      c.padInfo.left,
      lanes,
    ].join("_");
  }

  /**
   * The shader source after the backend's preamble.
   *
   * @returns the WGSL body
   */
  getUserCode(): string {
    const c = this.c;
    const [lanes, positionLanes] = this.workgroupSize;
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
            let ih0 = oh * ${c.strideHeight} - ${c.padInfo.top};
            let iw0 = ow * ${c.strideWidth} - ${c.padInfo.left};
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
}

/**
 * Runs the depthwise filter gradient: the split partial sums, then their reduction.
 *
 * @param backend the tfjs webgpu backend
 * @param c shape facts of the depthwise convolution (NHWC; `computeConv2DInfo(..., true)`)
 * @param x the convolution's input
 * @param dy the gradient of its output
 * @param split split knobs
 * @returns the filter gradient `[KH, KW, C, CM]`
 */
export function runDepthwiseFilterGrad(
  backend: WebGPUBackend,
  c: tf.backend_util.Conv2DInfo,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  split: DepthwiseSplit = DEFAULT_DEPTHWISE_SPLIT,
): tf.TensorInfo {
  const positions = c.batchSize * c.outHeight * c.outWidth;
  const probe = new DepthwiseFilterGradProgram(c, 1);
  const blocks = probe.dispatch[0];
  let splits = Math.max(1, Math.ceil(split.targetWorkgroups / blocks));
  splits = Math.min(splits, Math.max(1, Math.floor(positions / split.minChunk)), 65535);
  const chunk = Math.ceil(positions / splits);
  splits = Math.ceil(positions / chunk);
  const program = new DepthwiseFilterGradProgram(c, splits);
  const uniforms: ProgramUniforms = [
    { type: "int32", data: [positions] },
    { type: "int32", data: [chunk] },
  ];
  fastConvStats.depthwiseFilterGrad++;
  const partial = backend.runWebGPUProgram(program, [x, dy], "float32", uniforms);
  const reduce = new SplitKReduceProgram(c.filterShape);
  const out = backend.runWebGPUProgram(reduce, [partial], "float32", [
    { type: "int32", data: [program.outputShape[0]] },
  ]);
  backend.disposeData(partial.dataId);
  return out;
}
