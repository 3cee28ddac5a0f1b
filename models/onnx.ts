/**
 * ONNX export of the zoo's models: one ONNX node graph (opset 17, standard operators only) from
 * the tfjs model's layers, with the weights in PyTorch's layout as initializers. The input is
 * NCHW float32 (`input`, `[N, 3, H, W]`, normalized as for training: `(pixel / 255 - 0.5) / 0.5`),
 * the output `logits` `[N, classes]`. BatchNorm is kept (inference mode, running statistics), the
 * ConvRNN / ConvGRU cells become Concat, Conv, Split, Sigmoid, Tanh, Mul, Sub and Add, and
 * squeeze-excitation GlobalAveragePool, Conv, Relu, Sigmoid and Mul. The protobuf encoding is
 * onnx-proto's (protobufjs).
 *
 * @module
 */
import type { tf } from "../deps.ts";
import { onnxProto } from "../deno_deps.ts";
import { BatchNorm2d, Conv2d, ConvRecurrentCell, Linear, SqueezeExcite } from "./layers.ts";
import { stateDict } from "./weights.ts";
import type { SafeTensor } from "../io/safetensors.ts";

const { onnx } = onnxProto;

/** The ONNX operator set the export targets. */
export const ONNX_OPSET = 17;
/** Name of the graph's input (`[N, 3, H, W]`, float32, NCHW). */
export const ONNX_INPUT = "input";
/** Name of the graph's output (`[N, classes]`, float32 logits). */
export const ONNX_OUTPUT = "logits";

type NodeSpec = NonNullable<Parameters<typeof onnx.NodeProto.create>[0]>;
type TensorSpec = NonNullable<Parameters<typeof onnx.TensorProto.create>[0]>;
type AttributeSpec = NonNullable<Parameters<typeof onnx.AttributeProto.create>[0]>;
const { AttributeType } = onnx.AttributeProto;
const { DataType } = onnx.TensorProto;

function attr(name: string, value: number | number[] | TensorSpec, float = false): AttributeSpec {
  if (Array.isArray(value)) return { name, type: AttributeType.INTS, ints: value };
  if (typeof value === "object") return { name, type: AttributeType.TENSOR, t: value };
  return float
    ? { name, type: AttributeType.FLOAT, f: value }
    : { name, type: AttributeType.INT, i: value };
}

function rawBytes(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

/** Builds the node list, value names and initializers of one graph. */
class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: TensorSpec[] = [];
  private readonly names = new Map<number, string>();
  private readonly used = new Set<string>();

  constructor(private readonly weights: Map<string, SafeTensor>) {}

  /** The ONNX value name of a tfjs symbolic tensor. */
  valueOf(t: tf.SymbolicTensor): string {
    const name = this.names.get(t.id);
    if (name === undefined) throw new Error(`exportOnnx: tensor ${t.name} used before it is made`);
    return name;
  }

  bind(t: tf.SymbolicTensor, name: string): void {
    this.names.set(t.id, name);
  }

  /** A new value name derived from `base`. */
  fresh(base: string): string {
    let name = base, i = 1;
    while (this.used.has(name)) name = `${base}_${i++}`;
    this.used.add(name);
    return name;
  }

  /** Adds a node; returns its (first) output's name. */
  node(op: string, inputs: string[], out: string, attributes: AttributeSpec[] = []): string {
    const output = this.fresh(out);
    this.nodes.push({
      opType: op,
      name: output,
      input: inputs,
      output: [output],
      attribute: attributes,
    });
    return output;
  }

  /** A state-dict tensor as an initializer (float32, PyTorch's layout); returns its name. */
  weight(name: string): string {
    const t = this.weights.get(name);
    if (!t || !(t.data instanceof Float32Array)) throw new Error(`exportOnnx: no weight ${name}`);
    if (!this.used.has(name)) {
      this.used.add(name);
      this.initializers.push({
        name,
        dims: t.shape,
        dataType: DataType.FLOAT,
        rawData: rawBytes(t.data),
      });
    }
    return name;
  }

  /** A constant initializer. */
  constant(name: string, data: Float32Array | BigInt64Array, dims: number[]): string {
    const unique = this.fresh(name);
    const dataType = data instanceof Float32Array ? DataType.FLOAT : DataType.INT64;
    this.initializers.push({ name: unique, dims, dataType, rawData: rawBytes(data) });
    return unique;
  }

  conv(
    x: string,
    prefix: string,
    out: string,
    o: { k: number; stride?: number; pad?: number; groups?: number; bias?: boolean },
  ): string {
    const pad = o.pad ?? 0, stride = o.stride ?? 1;
    const inputs = [x, this.weight(`${prefix}.weight`)];
    if (o.bias) inputs.push(this.weight(`${prefix}.bias`));
    return this.node("Conv", inputs, out, [
      attr("kernel_shape", [o.k, o.k]),
      attr("pads", [pad, pad, pad, pad]),
      attr("strides", [stride, stride]),
      attr("dilations", [1, 1]),
      attr("group", o.groups ?? 1),
    ]);
  }
}

/** Adds one layer's nodes; returns the name of its output. */
function addLayer(g: GraphBuilder, layer: tf.layers.Layer, inputs: string[]): string {
  const p = layer.name;
  const config = layer.getConfig();
  if (layer instanceof Conv2d) {
    return g.conv(inputs[0], p, p, {
      k: config.kernelSize as number,
      stride: config.stride as number,
      pad: config.padding as number,
      groups: config.groups as number,
      bias: config.useBias as boolean,
    });
  }
  if (layer instanceof BatchNorm2d) {
    const stats = ["weight", "bias", "running_mean", "running_var"].map((k) =>
      g.weight(`${p}.${k}`)
    );
    let y = g.node("BatchNormalization", [inputs[0], ...stats], p, [
      attr("epsilon", config.epsilon as number, true),
    ]);
    if (config.residual) y = g.node("Add", [y, inputs[1]], `${p}/add`);
    if (config.activation === "relu") y = g.node("Relu", [y], `${p}/relu`);
    return y;
  }
  if (layer instanceof Linear) {
    return g.node("Gemm", [inputs[0], g.weight(`${p}.weight`), g.weight(`${p}.bias`)], p, [
      attr("transB", 1),
    ]);
  }
  if (layer.getClassName() === "GlobalAveragePooling2D") {
    const pooled = g.node("GlobalAveragePool", [inputs[0]], `${p}/pool`);
    return g.node("Flatten", [pooled], p, [attr("axis", 1)]);
  }
  if (layer instanceof ConvRecurrentCell) return addCell(g, layer, inputs);
  if (layer instanceof SqueezeExcite) {
    const pooled = g.node("GlobalAveragePool", [inputs[0]], `${p}/avgpool`);
    const s1 = g.node(
      "Relu",
      [g.conv(pooled, `${p}.fc1`, `${p}.fc1`, { k: 1, bias: true })],
      `${p}/relu`,
    );
    const s2 = g.node(
      "Sigmoid",
      [g.conv(s1, `${p}.fc2`, `${p}.fc2`, { k: 1, bias: true })],
      `${p}/scale`,
    );
    return g.node("Mul", [inputs[0], s2], p);
  }
  throw new Error(`exportOnnx: layer "${p}" (${layer.getClassName()}) has no ONNX form`);
}

/** The reference code's ConvRNN / ConvGRU update; a missing hidden state is zeros shaped as the input. */
function addCell(g: GraphBuilder, layer: ConvRecurrentCell, inputs: string[]): string {
  const p = layer.name;
  const { kind, hidden } = layer.getConfig() as { kind: string; hidden: number };
  const [x] = inputs;
  let h = inputs[1];
  if (h === undefined) {
    const channels = (layer.input as tf.SymbolicTensor).shape[3];
    if (channels !== hidden) {
      throw new Error(`exportOnnx: ${p} takes ${channels} channels and holds ${hidden}`);
    }
    const zero = onnx.TensorProto.create({
      dims: [1],
      dataType: DataType.FLOAT,
      rawData: rawBytes(new Float32Array([0])),
    });
    h = g.node("ConstantOfShape", [g.node("Shape", [x], `${p}/shape`)], `${p}/h0`, [
      attr("value", zero),
    ]);
  }
  const conv3 = (input: string, name: string) =>
    g.conv(input, `${p}.${name}`, `${p}.${name}`, { k: 3, pad: 1, bias: true });
  const z = g.node("Concat", [x, h], `${p}/z`, [attr("axis", 1)]);
  if (kind === "rnn") return g.node("Tanh", [conv3(z, "conv_x")], p);
  const gates = g.node("Sigmoid", [conv3(z, "conv_x")], `${p}/gates`);
  const sizes = g.constant(`${p}/split`, new BigInt64Array([BigInt(hidden), BigInt(hidden)]), [2]);
  const a = g.fresh(`${p}/a`), b = g.fresh(`${p}/b`);
  g.nodes.push({
    opType: "Split",
    name: `${p}/split`,
    input: [gates, sizes],
    output: [a, b],
    attribute: [attr("axis", 1)],
  });
  const bh = g.node("Mul", [b, h], `${p}/bh`);
  const y = g.node("Tanh", [
    conv3(g.node("Concat", [z, bh], `${p}/zbh`, [attr("axis", 1)]), "conv_y"),
  ], `${p}/y`);
  const one = g.constant(`${p}/one`, new Float32Array([1]), []);
  const keep = g.node("Mul", [a, h], `${p}/ah`);
  const update = g.node("Mul", [g.node("Sub", [one, a], `${p}/1-a`), y], `${p}/1-a_y`);
  return g.node("Add", [keep, update], p);
}

/**
 * The model as an ONNX model (opset 17): NCHW float32 `input` `[N, 3, H, W]`, `logits`
 * `[N, classes]`, the batch size left free, BatchNorm in inference mode.
 *
 * @param model a model of the zoo
 * @returns the `.onnx` file's bytes
 * @example
 * ```ts ignore
 * await Deno.writeFile("resnet20.onnx", await exportOnnx(model));
 * ```
 */
export async function exportOnnx(model: tf.LayersModel): Promise<Uint8Array> {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new Error(`exportOnnx: ${model.name} has several inputs or outputs`);
  }
  const g = new GraphBuilder(await stateDict(model));
  const [, height, width, channels] = model.inputs[0].shape;
  g.bind(model.inputs[0], g.fresh(ONNX_INPUT));
  for (const layer of model.layers) {
    if (layer.getClassName() === "InputLayer") continue;
    const ins = (Array.isArray(layer.input) ? layer.input : [layer.input]).map((t) => g.valueOf(t));
    g.bind(layer.output as tf.SymbolicTensor, addLayer(g, layer, ins));
  }
  const last = g.valueOf(model.outputs[0]);
  g.node("Identity", [last], ONNX_OUTPUT);
  const classes = model.outputs[0].shape[1]!;
  const tensorType = (dims: (number | string)[]) => ({
    tensorType: {
      elemType: DataType.FLOAT,
      shape: { dim: dims.map((d) => typeof d === "string" ? { dimParam: d } : { dimValue: d }) },
    },
  });
  const proto = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: ONNX_OPSET }],
    producerName: "regnet-vision",
    producerVersion: "0.1.0",
    docString: `${model.name}: input NCHW float32 normalized as (pixel / 255 - 0.5) / 0.5; ` +
      "output logits",
    graph: {
      name: model.name,
      node: g.nodes,
      initializer: g.initializers,
      input: [{ name: ONNX_INPUT, type: tensorType(["N", channels!, height!, width!]) }],
      output: [{ name: ONNX_OUTPUT, type: tensorType(["N", classes]) }],
    },
  });
  return onnx.ModelProto.encode(proto).finish();
}
