/**
 * tfjs layers with PyTorch's semantics and PyTorch's parameter names. Each layer is named after
 * its PyTorch module (`layer2.0.shortcut.0`) and lists its tensors as state-dict entries
 * ({@link TorchParam}), which is what makes weights portable between the two frameworks. All are
 * registered with tfjs's serialization, so models save and load in the LayersModel format.
 *
 * @module
 */
import { tf } from "../deps.ts";
import {
  batchNormTraining,
  type BatchStats,
  runningStatsUpdate,
  runningStatsUpdateInPlace,
} from "../ops/batchnorm.ts";
import { conv2d } from "../ops/conv.ts";
import { convGruStep, convRnnStep } from "../ops/recurrent.ts";
import { squeezeExcitation } from "../ops/squeeze_excite.ts";

type Kwargs = Record<string, unknown>;
type Initializer = ReturnType<typeof tf.initializers.zeros>;
type LayerVariable = tf.LayerVariable;
type Shape = (number | null)[];

/**
 * How a tensor is laid out in tfjs relative to PyTorch: `conv` is HWIO here and OIHW there,
 * `linear` is `[in, out]` here and `[out, in]` there, `plain` is the same in both.
 */
export type TorchLayout = "conv" | "linear" | "plain";

/** One state-dict entry of a layer. */
export interface TorchParam {
  /** The entry's name below its module (`weight`, `running_var`, `conv_x.bias`). */
  key: string;
  /** The tfjs variable that holds it. */
  variable: LayerVariable;
  /** How to transpose between tfjs and PyTorch. */
  layout: TorchLayout;
  /** PyTorch's dtype: BatchNorm's `num_batches_tracked` is int64 there. */
  torchDtype: "float32" | "int64";
}

/** A layer whose tensors map onto a PyTorch module's state dict. */
export interface TorchModule {
  /** The layer's state-dict entries, in PyTorch's order. */
  torchParams(): TorchParam[];
}

/** Whether a layer maps onto PyTorch state-dict entries. */
export function isTorchModule(layer: unknown): layer is TorchModule {
  return typeof (layer as Partial<TorchModule>).torchParams === "function";
}

/** Initializers that reproduce PyTorch's defaults in distribution. */
export type InitScheme = "torch-default" | "kaiming-fan-out";

function seededOrNot(seed: number | undefined, salt: number): number | undefined {
  return seed === undefined ? undefined : (seed * 1000003 + salt) >>> 0;
}

/** `nn.Conv2d`'s default: kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
function weightInit(scheme: InitScheme, seed: number | undefined): Initializer {
  return scheme === "torch-default"
    ? tf.initializers.varianceScaling({
      scale: 1 / 3,
      mode: "fanIn",
      distribution: "uniform",
      seed: seededOrNot(seed, 1),
    })
    : tf.initializers.varianceScaling({
      scale: 2,
      mode: "fanOut",
      distribution: "normal",
      seed: seededOrNot(seed, 1),
    });
}

function biasInit(scheme: InitScheme, fanIn: number, seed: number | undefined) {
  if (scheme !== "torch-default") return tf.initializers.zeros();
  const bound = 1 / Math.sqrt(fanIn);
  return tf.initializers.randomUniform({
    minval: -bound,
    maxval: bound,
    seed: seededOrNot(seed, 2),
  });
}

/** Arguments of {@link Conv2d}, as `nn.Conv2d` takes them. */
export interface Conv2dArgs {
  /** PyTorch module name, which is the layer's name. */
  name: string;
  /** Output channels. */
  filters: number;
  /** Square kernel size. */
  kernelSize: number;
  /** Stride; 1 when absent. */
  stride?: number;
  /** Symmetric zero padding; 0 when absent. */
  padding?: number;
  /** Channel groups; 1 when absent. */
  groups?: number;
  /** Whether the layer has a bias; false when absent. */
  useBias?: boolean;
  /** Initialization scheme; `torch-default` when absent. */
  init?: InitScheme;
  /** Seed of the initializers. */
  seed?: number;
  /** Whether the weights are trained. */
  trainable?: boolean;
}

/** `nn.Conv2d` on NHWC tensors: symmetric padding, groups, optional bias. */
export class Conv2d extends tf.layers.Layer implements TorchModule {
  /** tfjs serialization name. */
  static className = "TorchConv2d";
  private readonly args: Required<Omit<Conv2dArgs, "seed" | "trainable">> & { seed?: number };
  private kernel!: LayerVariable;
  private bias: LayerVariable | null = null;

  /** @param args the convolution's shape and name */
  constructor(args: Conv2dArgs) {
    super({ name: args.name, trainable: args.trainable });
    this.args = {
      name: args.name,
      filters: args.filters,
      kernelSize: args.kernelSize,
      stride: args.stride ?? 1,
      padding: args.padding ?? 0,
      groups: args.groups ?? 1,
      useBias: args.useBias ?? false,
      init: args.init ?? "torch-default",
      seed: args.seed,
    };
  }

  override build(inputShape: Shape | Shape[]): void {
    const channels = (inputShape as Shape)[3]!;
    const { kernelSize: k, groups, filters, init, seed } = this.args;
    if (channels % groups !== 0 || filters % groups !== 0) {
      throw new Error(`${this.name}: ${channels} -> ${filters} channels in ${groups} groups`);
    }
    const shape = [k, k, channels / groups, filters];
    this.kernel = this.addWeight("weight", shape, "float32", weightInit(init, seed));
    if (this.args.useBias) {
      const fanIn = k * k * channels / groups;
      this.bias = this.addWeight("bias", [filters], "float32", biasInit(init, fanIn, seed));
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const [n, h, w] = inputShape as Shape;
    const { kernelSize: k, stride, padding, filters } = this.args;
    const out = (size: number | null) =>
      size === null ? null : Math.floor((size + 2 * padding - k) / stride) + 1;
    return [n, out(h), out(w), filters];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
      const y = conv2d(x, this.kernel.read() as tf.Tensor4D, this.args);
      return this.bias ? y.add(this.bias.read()) : y;
    });
  }

  torchParams(): TorchParam[] {
    const params: TorchParam[] = [
      { key: "weight", variable: this.kernel, layout: "conv", torchDtype: "float32" },
    ];
    if (this.bias) {
      params.push({ key: "bias", variable: this.bias, layout: "plain", torchDtype: "float32" });
    }
    return params;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { name: _name, seed: _seed, ...rest } = this.args;
    return { ...super.getConfig(), ...rest };
  }
}

/** The first input's shape of a layer taking one or several inputs. */
function firstShape(inputShape: Shape | Shape[]): Shape {
  return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
}

/** Arguments of {@link BatchNorm2d}. */
export interface BatchNorm2dArgs {
  /** PyTorch module name, which is the layer's name. */
  name: string;
  /** PyTorch's eps; 1e-5 when absent. */
  epsilon?: number;
  /** PyTorch's momentum of the running averages; 0.1 when absent. */
  momentum?: number;
  /**
   * `relu` applies a ReLU after the normalization (and after the residual add, if any; fused on
   * webgpu); `linear` when absent.
   */
  activation?: "linear" | "relu";
  /**
   * Whether the layer takes two inputs `[x, shortcut]` and adds the shortcut to the normalized
   * `x` before the activation: `act(bn(x) + shortcut)` (a ResNet block's tail, fused on webgpu).
   * False when absent.
   */
  residual?: boolean;
  /** Whether gamma and beta are trained. */
  trainable?: boolean;
}

/**
 * `nn.BatchNorm2d` on NHWC tensors. In training mode (`apply(x, {training: true})`) it normalizes
 * with the batch's statistics and keeps them; {@link BatchNorm2d.commitRunningStats} then folds
 * them into the running averages, as PyTorch does during its forward pass. Keeping the update
 * out of the forward pass keeps it out of the gradient tape.
 */
export class BatchNorm2d extends tf.layers.Layer implements TorchModule {
  /** tfjs serialization name. */
  static className = "TorchBatchNorm2d";
  private readonly epsilon: number;
  private readonly momentum: number;
  private readonly activation: "linear" | "relu";
  private readonly residual: boolean;
  private gamma!: LayerVariable;
  private beta!: LayerVariable;
  private runningMean!: LayerVariable;
  private runningVar!: LayerVariable;
  private batchesTracked!: LayerVariable;
  private pending: BatchStats | null = null;

  /** @param args name, eps, momentum, activation, residual */
  constructor(args: BatchNorm2dArgs) {
    super({ name: args.name, trainable: args.trainable });
    this.epsilon = args.epsilon ?? 1e-5;
    this.momentum = args.momentum ?? 0.1;
    this.activation = args.activation ?? "linear";
    this.residual = args.residual ?? false;
  }

  override build(inputShape: Shape | Shape[]): void {
    const c = firstShape(inputShape)[3]!;
    this.gamma = this.addWeight("weight", [c], "float32", tf.initializers.ones());
    this.beta = this.addWeight("bias", [c], "float32", tf.initializers.zeros());
    const init = (i: Initializer, name: string, shape: number[]) =>
      this.addWeight(name, shape, "float32", i, undefined, false);
    this.runningMean = init(tf.initializers.zeros(), "running_mean", [c]);
    this.runningVar = init(tf.initializers.ones(), "running_var", [c]);
    this.batchesTracked = init(tf.initializers.zeros(), "num_batches_tracked", []);
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return firstShape(inputShape);
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (this.residual !== (list.length === 2)) {
      throw new Error(
        `${this.name}: takes ${this.residual ? "[x, shortcut]" : "one input"}, got ${list.length}`,
      );
    }
    const x = list[0] as tf.Tensor4D;
    const shortcut = this.residual ? list[1] as tf.Tensor4D : undefined;
    const gamma = this.gamma.read() as tf.Tensor1D, beta = this.beta.read() as tf.Tensor1D;
    if (kwargs["training"] !== true) {
      return tf.tidy(() => {
        const mean = this.runningMean.read(), variance = this.runningVar.read();
        const normalized = tf.batchNorm(x, mean, variance, beta, gamma, this.epsilon);
        const y = shortcut ? tf.add(normalized, shortcut) : normalized;
        return this.activation === "relu" ? tf.relu(y) : y;
      });
    }
    const count = x.shape[0] * x.shape[1] * x.shape[2];
    const { y, mean, variance } = tf.tidy(() => {
      const { y, stats } = batchNormTraining(x, gamma, beta, this.epsilon, {
        activation: this.activation,
        shortcut,
      });
      return { y, mean: stats.mean, variance: stats.variance };
    });
    this.discardPending();
    this.pending = { mean: tf.keep(mean), variance: tf.keep(variance), count };
    return y;
  }

  /**
   * Folds the statistics of the last training-mode batch into the running averages and counts
   * the batch; does nothing when no training-mode batch ran since the last call.
   */
  commitRunningStats(): void {
    BatchNorm2d.commitAll([this]);
  }

  /**
   * {@link BatchNorm2d.commitRunningStats} for every BatchNorm2d among `layers` that ran a
   * training-mode batch (others are skipped), in one multi-tensor update where the backend has
   * it (which also counts the batches, on the GPU).
   *
   * @param layers a model's layers
   */
  static commitAll(layers: Iterable<unknown>): void {
    const ready: BatchNorm2d[] = [];
    for (const l of layers) if (l instanceof BatchNorm2d && l.pending) ready.push(l);
    if (ready.length === 0) return;
    const done = runningStatsUpdateInPlace(ready.map((l) => ({
      runningMean: l.runningMean.read() as tf.Variable,
      runningVar: l.runningVar.read() as tf.Variable,
      stats: l.pending!,
      momentum: l.momentum,
      count: l.batchesTracked.read() as tf.Variable,
    })));
    for (const l of ready) {
      const stats = l.pending!;
      l.pending = null;
      if (!done) {
        tf.tidy(() => {
          const update = runningStatsUpdate(
            l.runningMean.read() as tf.Tensor1D,
            l.runningVar.read() as tf.Tensor1D,
            stats,
            l.momentum,
          );
          l.runningMean.write(update.mean);
          l.runningVar.write(update.variance);
          l.batchesTracked.write(l.batchesTracked.read().add(1));
        });
      }
      tf.dispose([stats.mean, stats.variance]);
    }
  }

  /** Drops the statistics of the last training-mode batch without using them. */
  discardPending(): void {
    if (this.pending) tf.dispose([this.pending.mean, this.pending.variance]);
    this.pending = null;
  }

  torchParams(): TorchParam[] {
    const f32 = (key: string, variable: LayerVariable): TorchParam => ({
      key,
      variable,
      layout: "plain",
      torchDtype: "float32",
    });
    return [
      f32("weight", this.gamma),
      f32("bias", this.beta),
      f32("running_mean", this.runningMean),
      f32("running_var", this.runningVar),
      {
        key: "num_batches_tracked",
        variable: this.batchesTracked,
        layout: "plain",
        torchDtype: "int64",
      },
    ];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      epsilon: this.epsilon,
      momentum: this.momentum,
      activation: this.activation,
      residual: this.residual,
    };
  }
}

/** Arguments of {@link Linear}. */
export interface LinearArgs {
  /** PyTorch module name, which is the layer's name. */
  name: string;
  /** Output features. */
  units: number;
  /** Initialization: PyTorch's default, or torchvision's RegNet head (N(0, 0.01), zero bias). */
  init?: "torch-default" | "normal-0.01";
  /** Seed of the initializers. */
  seed?: number;
}

/** `nn.Linear` on `[N, features]` tensors. */
export class Linear extends tf.layers.Layer implements TorchModule {
  /** tfjs serialization name. */
  static className = "TorchLinear";
  private readonly units: number;
  private readonly init: "torch-default" | "normal-0.01";
  private readonly seed?: number;
  private kernel!: LayerVariable;
  private bias!: LayerVariable;

  /** @param args name and output features */
  constructor(args: LinearArgs) {
    super({ name: args.name });
    this.units = args.units;
    this.init = args.init ?? "torch-default";
    this.seed = args.seed;
  }

  override build(inputShape: Shape | Shape[]): void {
    const features = (inputShape as Shape)[1]!;
    const seed = this.seed;
    const [w, b] = this.init === "torch-default"
      ? [weightInit("torch-default", seed), biasInit("torch-default", features, seed)]
      : [
        tf.initializers.randomNormal({ mean: 0, stddev: 0.01, seed: seededOrNot(seed, 1) }),
        tf.initializers.zeros(),
      ];
    this.kernel = this.addWeight("weight", [features, this.units], "float32", w);
    this.bias = this.addWeight("bias", [this.units], "float32", b);
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return [(inputShape as Shape)[0], this.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor2D;
      return tf.matMul(x, this.kernel.read() as tf.Tensor2D).add(this.bias.read());
    });
  }

  torchParams(): TorchParam[] {
    return [
      { key: "weight", variable: this.kernel, layout: "linear", torchDtype: "float32" },
      { key: "bias", variable: this.bias, layout: "plain", torchDtype: "float32" },
    ];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), units: this.units, init: this.init };
  }
}

/** The recurrent cells of the reference code's ResNetRNN. */
export const CELL_KINDS = ["rnn", "gru"] as const;
/** `rnn` (ConvRNN) or `gru` (ConvGRU). */
export type CellKind = typeof CELL_KINDS[number];

/** Arguments of {@link ConvRecurrentCell}. */
export interface ConvRecurrentCellArgs {
  /** PyTorch module name (`layer1.0.rnn`), which is the layer's name. */
  name: string;
  /** ConvRNN or ConvGRU. */
  kind: CellKind;
  /** Hidden channels. */
  hidden: number;
  /** Seed of the initializers. */
  seed?: number;
}

/**
 * The reference code's `ConvRNN` / `ConvGRU` as one layer taking `[x]` (hidden state reset to
 * zeros) or `[x, h]`, and returning the new hidden state. A hidden state whose channel count
 * differs from the cell's is reset to zeros, as in the reference code; the model builders pass
 * none in that case.
 */
export class ConvRecurrentCell extends tf.layers.Layer implements TorchModule {
  /** tfjs serialization name. */
  static className = "ConvRecurrentCell";
  private readonly kind: CellKind;
  private readonly hidden: number;
  private readonly seed?: number;
  private kernelX!: LayerVariable;
  private biasX!: LayerVariable;
  private kernelY: LayerVariable | null = null;
  private biasY: LayerVariable | null = null;

  /** @param args kind, hidden channels and name */
  constructor(args: ConvRecurrentCellArgs) {
    super({ name: args.name });
    if (!(CELL_KINDS as readonly string[]).includes(args.kind)) {
      throw new Error(`unknown cell kind "${args.kind}"; valid: ${CELL_KINDS.join(", ")}`);
    }
    this.kind = args.kind;
    this.hidden = args.hidden;
    this.seed = args.seed;
  }

  override build(inputShape: Shape | Shape[]): void {
    const shapes = (Array.isArray(inputShape[0]) ? inputShape : [inputShape]) as Shape[];
    const c = shapes[0][3]!, hc = this.hidden;
    const conv = (name: string, cin: number, cout: number, salt: number): LayerVariable[] => {
      const seed = this.seed === undefined ? undefined : this.seed + salt;
      return [
        this.addWeight(
          `${name}.weight`,
          [3, 3, cin, cout],
          "float32",
          weightInit("torch-default", seed),
        ),
        this.addWeight(`${name}.bias`, [cout], "float32", biasInit("torch-default", 9 * cin, seed)),
      ];
    };
    if (this.kind === "rnn") {
      [this.kernelX, this.biasX] = conv("conv_x", c + hc, hc, 0);
    } else {
      [this.kernelX, this.biasX] = conv("conv_x", c + hc, 2 * hc, 0);
      [this.kernelY, this.biasY] = conv("conv_y", c + 2 * hc, hc, 7);
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shapes = (Array.isArray(inputShape[0]) ? inputShape : [inputShape]) as Shape[];
    const [n, h, w] = shapes[0];
    return [n, h, w, this.hidden];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      const x = list[0] as tf.Tensor4D;
      const [n, hh, ww] = x.shape;
      let h = list[1] as tf.Tensor4D | undefined;
      if (h === undefined || h.shape[3] !== this.hidden) h = tf.zeros([n, hh, ww, this.hidden]);
      const kx = this.kernelX.read() as tf.Tensor4D, bx = this.biasX.read() as tf.Tensor1D;
      if (this.kind === "rnn") return convRnnStep(x, h, kx, bx);
      return convGruStep(
        x,
        h,
        kx,
        bx,
        this.kernelY!.read() as tf.Tensor4D,
        this.biasY!.read() as tf.Tensor1D,
      );
    });
  }

  torchParams(): TorchParam[] {
    const params: TorchParam[] = [
      { key: "conv_x.weight", variable: this.kernelX, layout: "conv", torchDtype: "float32" },
      { key: "conv_x.bias", variable: this.biasX, layout: "plain", torchDtype: "float32" },
    ];
    if (this.kernelY && this.biasY) {
      params.push(
        { key: "conv_y.weight", variable: this.kernelY, layout: "conv", torchDtype: "float32" },
        { key: "conv_y.bias", variable: this.biasY, layout: "plain", torchDtype: "float32" },
      );
    }
    return params;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), kind: this.kind, hidden: this.hidden };
  }
}

/** Arguments of {@link SqueezeExcite}. */
export interface SqueezeExciteArgs {
  /** PyTorch module name (`...f.se`), which is the layer's name. */
  name: string;
  /** Channels of the squeezed representation. */
  squeeze: number;
  /** Seed of the initializers. */
  seed?: number;
}

/**
 * torchvision's `SqueezeExcitation`: global average pool, `fc1` (1x1 conv with bias), ReLU,
 * `fc2` (1x1 conv with bias), sigmoid, and the input scaled channel by channel
 * (`squeezeExcitation` in `ops/squeeze_excite.ts`: one fused op where the backend has its kernel).
 */
export class SqueezeExcite extends tf.layers.Layer implements TorchModule {
  /** tfjs serialization name. */
  static className = "SqueezeExcite";
  private readonly squeeze: number;
  private readonly seed?: number;
  private w1!: LayerVariable;
  private b1!: LayerVariable;
  private w2!: LayerVariable;
  private b2!: LayerVariable;

  /** @param args name and squeeze channels */
  constructor(args: SqueezeExciteArgs) {
    super({ name: args.name });
    this.squeeze = args.squeeze;
    this.seed = args.seed;
  }

  override build(inputShape: Shape | Shape[]): void {
    const c = (inputShape as Shape)[3]!, s = this.squeeze, seed = this.seed;
    const w = () => weightInit("kaiming-fan-out", seed);
    this.w1 = this.addWeight("fc1.weight", [1, 1, c, s], "float32", w());
    this.b1 = this.addWeight("fc1.bias", [s], "float32", tf.initializers.zeros());
    this.w2 = this.addWeight("fc2.weight", [1, 1, s, c], "float32", w());
    this.b2 = this.addWeight("fc2.bias", [c], "float32", tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
      const c = x.shape[3], s = this.squeeze;
      return squeezeExcitation(x, {
        w1: this.w1.read().reshape([c, s]) as tf.Tensor2D,
        b1: this.b1.read() as tf.Tensor1D,
        w2: this.w2.read().reshape([s, c]) as tf.Tensor2D,
        b2: this.b2.read() as tf.Tensor1D,
      });
    });
  }

  torchParams(): TorchParam[] {
    return [
      { key: "fc1.weight", variable: this.w1, layout: "conv", torchDtype: "float32" },
      { key: "fc1.bias", variable: this.b1, layout: "plain", torchDtype: "float32" },
      { key: "fc2.weight", variable: this.w2, layout: "conv", torchDtype: "float32" },
      { key: "fc2.bias", variable: this.b2, layout: "plain", torchDtype: "float32" },
    ];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), squeeze: this.squeeze };
  }
}

for (const cls of [Conv2d, BatchNorm2d, Linear, ConvRecurrentCell, SqueezeExcite]) {
  tf.serialization.registerClass(
    cls as unknown as tf.serialization.SerializableConstructor<tf.layers.Layer>,
  );
}
