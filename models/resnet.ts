/**
 * The reference code's CIFAR ResNets (BasicBlocks with 1x1 conv + BN projection shortcuts) and their
 * recurrent variants (ResNetRNN: a ConvRNN or ConvGRU cell inside every block, after Xu et al.,
 * "RegNet: Self-Regulated Network for Image Classification"). A variant is one config; one
 * builder makes them all, with PyTorch's module names as layer names.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { BatchNorm2d, type CellKind, Conv2d, ConvRecurrentCell, Linear } from "./layers.ts";

type Sym = tf.SymbolicTensor;

/** A CIFAR ResNet: stages of BasicBlocks. */
export interface ResNetConfig {
  /** Blocks per stage (`[3, 3, 3]` is ResNet20: 6n + 2 layers with n = 3). */
  depths: readonly number[];
  /** Channels per stage; each stage after the first halves the resolution. */
  widths: readonly number[];
  /** The recurrent cell inside every block, or none for the plain ResNet. */
  cell?: CellKind;
}

/** Options of {@link buildResNet}. */
export interface BuildOptions {
  /** Output classes. */
  numClasses: number;
  /** Height and width of the NHWC input. */
  inputSize: number;
  /** The model's name. */
  name: string;
  /** Seed of the weight initializers; random when absent. */
  seed?: number;
}

/** The reference code's BasicBlock (or BasicRNNBlock when a cell is given), as a function of tensors. */
function basicBlock(
  x: Sym,
  h: Sym | null,
  o: { prefix: string; planes: number; stride: number; cell?: CellKind; seed?: number },
): { out: Sym; h: Sym | null } {
  const { prefix: p, planes, stride } = o;
  const inPlanes = x.shape[3]!;
  const seed = (salt: number) => o.seed === undefined ? undefined : o.seed + salt;
  const conv = (name: string, filters: number, k: number, s: number, salt: number) =>
    new Conv2d({
      name,
      filters,
      kernelSize: k,
      stride: s,
      padding: k === 3 ? 1 : 0,
      seed: seed(salt),
    });
  const bn = (name: string, t: Sym, activation?: "relu") =>
    new BatchNorm2d({ name, activation }).apply(t) as Sym;

  // relu(bn1(conv1(x))), the ReLU fused into the BatchNorm.
  let out = bn(`${p}.bn1`, conv(`${p}.conv1`, planes, 3, stride, 1).apply(x) as Sym, "relu");
  if (o.cell) {
    const cell = new ConvRecurrentCell({
      name: `${p}.rnn`,
      kind: o.cell,
      hidden: planes,
      seed: seed(3),
    });
    // The reference code's cells reset h to zeros when its channel count differs from theirs.
    h = cell.apply(h !== null && h.shape[3] === planes ? [out, h] : [out]) as Sym;
    out = h;
  }
  out = conv(`${p}.conv2`, planes, 3, 1, 2).apply(out) as Sym;
  let shortcut = x;
  if (stride !== 1 || inPlanes !== planes) {
    shortcut = bn(`${p}.shortcut.1`, conv(`${p}.shortcut.0`, planes, 1, stride, 4).apply(x) as Sym);
  }
  // relu(bn2(conv2(out)) + shortcut), the add and the ReLU fused into the BatchNorm.
  out = new BatchNorm2d({ name: `${p}.bn2`, activation: "relu", residual: true })
    .apply([out, shortcut]) as Sym;
  return { out, h: o.cell ? h : null };
}

/**
 * Builds a CIFAR ResNet from its config, layer names as in the reference PyTorch code (`conv1`,
 * `layer2.0.shortcut.0`, `layer1.0.rnn`, `linear`).
 *
 * @param config stages and cell
 * @param options classes, input size, name, seed
 * @returns a tfjs LayersModel taking `[N, inputSize, inputSize, 3]` and giving logits
 */
export function buildResNet(config: ResNetConfig, options: BuildOptions): tf.LayersModel {
  const seed = (salt: number) =>
    options.seed === undefined ? undefined : options.seed * 7919 + salt;
  const input = tf.input({ shape: [options.inputSize, options.inputSize, 3], name: "input" });
  const stem = new Conv2d({
    name: "conv1",
    filters: config.widths[0],
    kernelSize: 3,
    padding: 1,
    seed: seed(0),
  });
  let x = new BatchNorm2d({ name: "bn1", activation: "relu" }).apply(stem.apply(input)) as Sym;
  let h: Sym | null = null;
  config.widths.forEach((planes, stage) => {
    for (let i = 0; i < config.depths[stage]; i++) {
      const stride = i === 0 && stage > 0 ? 2 : 1;
      const prefix = `layer${stage + 1}.${i}`;
      const salt = 100 * (stage + 1) + 10 * i;
      ({ out: x, h } = basicBlock(x, h, {
        prefix,
        planes,
        stride,
        cell: config.cell,
        seed: seed(salt),
      }));
    }
  });
  x = tf.layers.globalAveragePooling2d({ name: "avgpool" }).apply(x) as Sym;
  const logits = new Linear({ name: "linear", units: options.numClasses, seed: seed(9) }).apply(
    x,
  ) as Sym;
  return tf.model({ inputs: input, outputs: logits, name: options.name });
}
