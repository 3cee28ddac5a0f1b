/**
 * torchvision's RegNet (`torchvision.models.regnet`): the design space of Radosavovic et al.,
 * "Designing Network Design Spaces", with Y blocks (group convolution, squeeze-and-excitation).
 * A variant is one line of numbers; stage widths and depths are derived from it in one checked
 * place ({@link regnetStages}), and layer names follow torchvision's state dict
 * (`trunk_output.block3.block3-0.f.b.0`).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { BatchNorm2d, Conv2d, Linear, SqueezeExcite } from "./layers.ts";
import type { BuildOptions } from "./resnet.ts";

type Sym = tf.SymbolicTensor;

/** torchvision's `BlockParams.from_init_params` arguments. */
export interface RegNetConfig {
  /** Total number of blocks. */
  depth: number;
  /** Initial width. */
  w0: number;
  /** Width slope. */
  wa: number;
  /** Width multiplier between stages. */
  wm: number;
  /** Channels per group in the 3x3 convolutions. */
  groupWidth: number;
  /** Squeeze-and-excitation ratio, of the block's input width; 0 for none. */
  seRatio: number;
  /** Bottleneck multiplier; 1 when absent. */
  bottleneck?: number;
  /** Stem width; 32 when absent. */
  stemWidth?: number;
}

/** One stage of a RegNet. */
export interface RegNetStage {
  /** Output channels. */
  width: number;
  /** Number of blocks. */
  depth: number;
  /** Channels per group. */
  groupWidth: number;
  /** Bottleneck multiplier. */
  bottleneck: number;
}

const QUANT = 8;

/**
 * Stage widths and depths from a RegNet config, as torchvision computes them (quantized linear
 * widths, stages where the width changes, widths made compatible with the group width).
 *
 * @param c the variant's numbers
 * @returns its stages
 * @example
 * ```ts
 * import { REGNET_CONFIGS, regnetStages } from "./regnet.ts";
 * regnetStages(REGNET_CONFIGS.regnet400mf).map((s) => s.width); // [48, 104, 208, 440]
 * ```
 */
export function regnetStages(c: RegNetConfig): RegNetStage[] {
  const f32 = Math.fround;
  const bottleneck = c.bottleneck ?? 1;
  // torchvision computes these in float32 tensors; Math.fround keeps the same rounding points.
  const widths = Array.from({ length: c.depth }, (_, i) => {
    const cont = f32(f32(i * f32(c.wa)) + f32(c.w0));
    const capacity = roundHalfEven(f32(f32(Math.log(f32(cont / c.w0))) / f32(Math.log(c.wm))));
    const w = f32(f32(c.w0) * f32(Math.pow(c.wm, capacity)));
    return roundHalfEven(f32(w / QUANT)) * QUANT;
  });
  const stages: RegNetStage[] = [];
  for (const w of widths) {
    const last = stages[stages.length - 1];
    if (last && last.width === w) last.depth++;
    else stages.push({ width: w, depth: 1, groupWidth: c.groupWidth, bottleneck });
  }
  return stages.map((s) => {
    const wBot = Math.trunc(s.width * s.bottleneck);
    const g = Math.min(s.groupWidth, wBot);
    const wBotAdjusted = makeDivisible(wBot, g);
    return { ...s, groupWidth: g, width: Math.trunc(wBotAdjusted / s.bottleneck) };
  });
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision's `_make_divisible(v, divisor)` with `min_value = divisor`. */
function makeDivisible(v: number, divisor: number): number {
  const newV = Math.max(
    divisor,
    Math.trunc(v + divisor / 2) - (Math.trunc(v + divisor / 2) % divisor),
  );
  return newV < 0.9 * v ? newV + divisor : newV;
}

/** The RegNet variants, as torchvision defines them. */
export const REGNET_CONFIGS = {
  /** `regnet_y_400mf` */
  regnet400mf: { depth: 16, w0: 48, wa: 27.89, wm: 2.09, groupWidth: 8, seRatio: 0.25 },
  /** `regnet_y_800mf` */
  regnet800mf: { depth: 14, w0: 56, wa: 38.84, wm: 2.4, groupWidth: 16, seRatio: 0.25 },
} as const satisfies Record<string, RegNetConfig>;

/** torchvision's `ResBottleneckBlock` with its `BottleneckTransform`, as a function of tensors. */
function yBlock(
  x: Sym,
  o: {
    prefix: string;
    width: number;
    stride: number;
    stage: RegNetStage;
    seRatio: number;
    seed?: number;
  },
): Sym {
  const { prefix: p, width, stride, stage } = o;
  const widthIn = x.shape[3]!;
  const seed = (salt: number) => o.seed === undefined ? undefined : o.seed + salt;
  const convBn = (
    name: string,
    t: Sym,
    filters: number,
    k: number,
    s: number,
    groups: number,
    salt: number,
    activation?: "relu",
    residual?: Sym,
  ) => {
    const conv = new Conv2d({
      name: `${name}.0`,
      filters,
      kernelSize: k,
      stride: s,
      padding: (k - 1) / 2,
      groups,
      init: "kaiming-fan-out",
      seed: seed(salt),
    });
    // torchvision's Conv2dNormActivation; its ReLU (`.2`) is fused into the BatchNorm, and
    // so are a residual add and the ReLU after it.
    const bn = new BatchNorm2d({ name: `${name}.1`, activation, residual: residual !== undefined });
    return bn.apply(residual ? [conv.apply(t) as Sym, residual] : conv.apply(t)) as Sym;
  };

  const wB = Math.round(width * stage.bottleneck);
  const groups = Math.floor(wB / stage.groupWidth);
  let f = convBn(`${p}.f.a`, x, wB, 1, 1, 1, 1, "relu");
  f = convBn(`${p}.f.b`, f, wB, 3, stride, groups, 2, "relu");
  if (o.seRatio > 0) {
    const squeeze = Math.round(o.seRatio * widthIn);
    f = new SqueezeExcite({ name: `${p}.f.se`, squeeze, seed: seed(3) }).apply(f) as Sym;
  }
  const shortcut = widthIn !== width || stride !== 1
    ? convBn(`${p}.proj`, x, width, 1, stride, 1, 5)
    : x;
  // relu(shortcut + f.c(f)): the add and the block's ReLU (`.activation`) fused into f.c's BN.
  return convBn(`${p}.f.c`, f, width, 1, 1, 1, 4, "relu", shortcut);
}

/**
 * Builds a RegNetY from its config, layer names as in torchvision's state dict.
 *
 * @param config the variant's numbers
 * @param options classes, input size, name, seed
 * @returns a tfjs LayersModel taking `[N, inputSize, inputSize, 3]` and giving logits
 */
export function buildRegNet(config: RegNetConfig, options: BuildOptions): tf.LayersModel {
  const seed = (salt: number) =>
    options.seed === undefined ? undefined : options.seed * 7919 + salt;
  const input = tf.input({ shape: [options.inputSize, options.inputSize, 3], name: "input" });
  const stemConv = new Conv2d({
    name: "stem.0",
    filters: config.stemWidth ?? 32,
    kernelSize: 3,
    stride: 2,
    padding: 1,
    init: "kaiming-fan-out",
    seed: seed(0),
  });
  let x = new BatchNorm2d({ name: "stem.1", activation: "relu" }).apply(
    stemConv.apply(input),
  ) as Sym;
  regnetStages(config).forEach((stage, s) => {
    for (let i = 0; i < stage.depth; i++) {
      const prefix = `trunk_output.block${s + 1}.block${s + 1}-${i}`;
      x = yBlock(x, {
        prefix,
        width: stage.width,
        stride: i === 0 ? 2 : 1,
        stage,
        seRatio: config.seRatio,
        seed: seed(1000 * (s + 1) + 10 * i),
      });
    }
  });
  x = tf.layers.globalAveragePooling2d({ name: "avgpool" }).apply(x) as Sym;
  const fc = new Linear({
    name: "fc",
    units: options.numClasses,
    init: "normal-0.01",
    seed: seed(9),
  });
  return tf.model({ inputs: input, outputs: fc.apply(x) as Sym, name: options.name });
}
