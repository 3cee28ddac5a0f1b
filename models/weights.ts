/**
 * Model weights as PyTorch state dicts: names and layouts of the reference code's modules and of
 * torchvision, stored in safetensors, or read from PyTorch's own checkpoints (`.pth`). A state
 * dict saved from PyTorch loads as is; ours load back into PyTorch.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { parseSafetensors, type SafeTensor, serializeSafetensors } from "../io/safetensors.ts";
import { isZipArchive, parsePth } from "../io/pth.ts";
import { checksumMetadata, checksumMismatch } from "../io/checksums.ts";
import { isTorchModule, type TorchParam } from "./layers.ts";
import { UserError } from "../util/errors.ts";

/** One state-dict entry of a model: its full PyTorch name and where it lives here. */
export interface StateEntry extends TorchParam {
  /** Full PyTorch name (`layer2.0.shortcut.1.running_var`). */
  name: string;
  /** Whether the optimizer updates it (PyTorch's parameters, not buffers). */
  trainable: boolean;
}

/**
 * The model's state-dict entries in PyTorch's order.
 *
 * @param model a model of the zoo
 * @returns one entry per PyTorch tensor
 */
export function stateEntries(model: tf.LayersModel): StateEntry[] {
  const entries: StateEntry[] = [];
  for (const layer of model.layers) {
    if (!isTorchModule(layer)) continue;
    const trainable = new Set(layer.trainableWeights.map((w) => w.id));
    for (const p of layer.torchParams()) {
      entries.push({
        ...p,
        name: `${layer.name}.${p.key}`,
        trainable: trainable.has(p.variable.id),
      });
    }
  }
  return entries;
}

/** The PyTorch shape of an entry. */
export function torchShape(entry: TorchParam): number[] {
  const s = entry.variable.shape as number[];
  if (entry.layout === "conv") return [s[3], s[2], s[0], s[1]];
  if (entry.layout === "linear") return [s[1], s[0]];
  return s;
}

const TO_TORCH = { conv: [3, 2, 0, 1], linear: [1, 0] } as const;
const FROM_TORCH = { conv: [2, 3, 1, 0], linear: [1, 0] } as const;

/**
 * Converts a tfjs tensor to PyTorch's layout for `entry`.
 *
 * @returns a new tensor in PyTorch's layout
 */
export function toTorchLayout(entry: TorchParam, value: tf.Tensor): tf.Tensor {
  return entry.layout === "plain" ? value.clone() : value.transpose([...TO_TORCH[entry.layout]]);
}

/**
 * Converts a tensor in PyTorch's layout to the tfjs layout of `entry`.
 *
 * @returns a new tensor in tfjs's layout
 */
export function fromTorchLayout(entry: TorchParam, value: tf.Tensor): tf.Tensor {
  return entry.layout === "plain" ? value.clone() : value.transpose([...FROM_TORCH[entry.layout]]);
}

/**
 * The model's state dict as host arrays in PyTorch's layout (int64 as `BigInt64Array`).
 *
 * @param model a model of the zoo
 * @returns tensors by PyTorch name
 */
export async function stateDict(model: tf.LayersModel): Promise<Map<string, SafeTensor>> {
  const out = new Map<string, SafeTensor>();
  for (const entry of stateEntries(model)) {
    const t = tf.tidy(() => toTorchLayout(entry, entry.variable.read()));
    const values = await t.data() as Float32Array;
    t.dispose();
    const shape = torchShape(entry);
    out.set(
      entry.name,
      entry.torchDtype === "int64"
        ? { dtype: "I64", shape, data: BigInt64Array.from(values, (v) => BigInt(Math.round(v))) }
        : { dtype: "F32", shape, data: new Float32Array(values) },
    );
  }
  return out;
}

/** What {@link assignStateDict} and {@link loadWeights} did. */
export interface LoadReport {
  /** The model's tensors that were set. */
  loaded: string[];
  /** The model's tensors that were left as they were, each with the reason. */
  notLoaded: string[];
  /** Tensors of the source that the model has no place for. */
  unused: string[];
  /** Lines worth telling about the source (a state dict found under a key, a prefix removed). */
  notes: string[];
}

/** Options of {@link assignStateDict} and {@link loadWeights}. */
export interface LoadOptions {
  /**
   * `true` (the default): every tensor of the model must be in the source with PyTorch's shape,
   * and nothing else; anything else is one error listing all the problems. `false` (fine-tuning
   * from weights whose head differs): the tensors that fit are loaded, the others are reported.
   */
  strict?: boolean;
}

/**
 * Assigns a state dict to the model. Strict by default: every entry must be present with
 * PyTorch's shape (but for BatchNorm's `num_batches_tracked`, which starts at 0 when absent, as
 * PyTorch's `load_state_dict` does for older checkpoints); missing, unexpected or mis-shaped
 * tensors are one error listing them all.
 *
 * @param model a model of the zoo
 * @param tensors tensors by PyTorch name
 * @param source where they came from, for the error message
 * @param options `strict: false` loads what fits and reports the rest
 * @returns what was loaded and what was not
 */
export function assignStateDict(
  model: tf.LayersModel,
  tensors: Map<string, SafeTensor>,
  source = "state dict",
  options: LoadOptions = {},
): LoadReport {
  const entries = stateEntries(model);
  const known = new Set(entries.map((e) => e.name));
  // As PyTorch's BatchNorm loads state dicts of older versions: a missing batch counter starts
  // at 0; every other tensor must be there.
  const counterOnly = (e: StateEntry) => e.name.endsWith(".num_batches_tracked");
  const missing = entries.filter((e) => !tensors.has(e.name) && !counterOnly(e)).map((e) => e.name);
  const unexpected = [...tensors.keys()].filter((k) => !known.has(k));
  const misshaped = entries.filter((e) => tensors.has(e.name)).flatMap((e) => {
    const want = torchShape(e), got = tensors.get(e.name)!.shape;
    return want.join(",") === got.join(",") ? [] : [`${e.name} [${got}] (expected [${want}])`];
  });
  const problems = [
    missing.length ? `missing ${list(missing)}` : "",
    unexpected.length ? `unexpected ${list(unexpected)}` : "",
    misshaped.length ? `mis-shaped ${list(misshaped)}` : "",
  ].filter((p) => p);
  if (problems.length && options.strict !== false) {
    throw new UserError(`${source}: does not fit model "${model.name}": ${problems.join("; ")}`);
  }
  const fits = entries.filter((e) =>
    tensors.has(e.name) && tensors.get(e.name)!.shape.join(",") === torchShape(e).join(",")
  );
  if (fits.length === 0) {
    throw new UserError(
      `${source}: no tensor fits model "${model.name}": ${problems.join("; ")}`,
    );
  }
  // Batch counters absent from the source start at 0.
  const zeroed = entries.filter((e) => counterOnly(e) && !tensors.has(e.name));
  for (const entry of [...fits, ...zeroed]) {
    const t = tensors.get(entry.name) ??
      { dtype: "I64", shape: torchShape(entry), data: new BigInt64Array(1) } as SafeTensor;
    const values = t.data instanceof BigInt64Array
      ? Float32Array.from(t.data, (v) => Number(v))
      : Float32Array.from(t.data as ArrayLike<number>);
    tf.tidy(() => {
      const value = fromTorchLayout(entry, tf.tensor(values, t.shape, "float32"));
      entry.variable.write(value);
    });
  }
  return {
    loaded: [...fits, ...zeroed].map((e) => e.name),
    notLoaded: [...missing.map((m) => `${m} (not in the source)`), ...misshaped],
    unused: unexpected,
    notes: zeroed.length
      ? [`${zeroed.length} BatchNorm batch counters (num_batches_tracked) absent: set to 0`]
      : [],
  };
}

function list(names: string[]): string {
  const shown = names.slice(0, 12).join(", ");
  return names.length > 12 ? `${names.length} tensors: ${shown}, ...` : shown;
}

/** The weight file formats that {@link readStateDict} reads. */
export type WeightFormat = "safetensors" | "pth";

/**
 * Reads a state dict from a weights file: safetensors, or a PyTorch checkpoint (`.pth`/`.pt`,
 * the zip format of `torch.save`, told apart by its first bytes). Names saved from a model
 * wrapped in `nn.DataParallel` (every one starting with `module.`) lose that prefix, with a note.
 *
 * @param source a path or the file's bytes
 * @param name the file's name for messages (the path when `source` is one)
 * @returns the tensors by PyTorch name, the format, and notes on what was done
 */
export async function readStateDict(
  source: string | Uint8Array,
  name = typeof source === "string" ? source : "weights",
): Promise<{ tensors: Map<string, SafeTensor>; format: WeightFormat; notes: string[] }> {
  let bytes: Uint8Array;
  if (typeof source === "string") {
    try {
      bytes = await Deno.readFile(source);
    } catch (e) {
      throw new UserError(`${source}: cannot read weights (${(e as Error).message})`);
    }
  } else bytes = source;
  // By content; a file named like a checkpoint that is neither gets the checkpoint's message.
  const pthByName = /\.(pth|pt|bin|ckpt)$/i.test(name);
  const format: WeightFormat = isZipArchive(bytes) || (pthByName && !looksLikeSafetensors(bytes))
    ? "pth"
    : "safetensors";
  let tensors: Map<string, SafeTensor>;
  const notes: string[] = [];
  try {
    if (format === "pth") {
      const read = parsePth(bytes, name);
      tensors = read.tensors;
      notes.push(...read.notes);
    } else tensors = parseSafetensors(bytes, name).tensors;
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  // Tensor checksums, where the file carries them (run folders' weights and checkpoints).
  const mismatch = format === "safetensors" ? checksumMismatch(bytes) : null;
  if (mismatch) throw new UserError(`${name}: ${mismatch}`);
  const names = [...tensors.keys()];
  if (names.length > 0 && names.every((n) => n.startsWith("module."))) {
    tensors = new Map([...tensors].map(([k, v]) => [k.slice("module.".length), v]));
    notes.push(
      `removed the prefix "module." from every tensor name (a model saved from nn.DataParallel)`,
    );
  }
  return { tensors, format, notes };
}

/** A safetensors file starts with a little-endian header length followed by `{`. */
function looksLikeSafetensors(bytes: Uint8Array): boolean {
  return bytes.length > 9 && bytes[8] === 0x7b && bytes[5] === 0 && bytes[6] === 0 &&
    bytes[7] === 0;
}

/**
 * Loads PyTorch-named weights into the model from a safetensors file or a PyTorch checkpoint
 * (`torch.save(model.state_dict(), "x.pth")`, torch >= 1.6), a path or the file's bytes.
 *
 * @param model a model of the zoo
 * @param source a path or the file's bytes
 * @param options `strict: false` loads the tensors that fit and reports the others
 * @returns what was loaded, what was not, and notes (a prefix removed, a nested state dict)
 * @example
 * ```ts ignore
 * await loadWeights(model, "runs/resnet20/best.safetensors");
 * const report = await loadWeights(model, "resnet20.pth", { strict: false });
 * console.log(report.notLoaded); // e.g. ["linear.weight [100,64] (expected [10,64])", ...]
 * ```
 */
export async function loadWeights(
  model: tf.LayersModel,
  source: string | Uint8Array,
  options: LoadOptions = {},
): Promise<LoadReport> {
  const name = typeof source === "string" ? source : "weights";
  const { tensors, notes } = await readStateDict(source, name);
  const report = assignStateDict(model, tensors, name, options);
  return { ...report, notes: [...notes, ...report.notes] };
}

/**
 * The model's weights as a safetensors file with PyTorch's names and layouts, which
 * `safetensors.torch.load_file` then `model.load_state_dict` take as is; the CRC-32 of each
 * tensor rides in the metadata (`io/checksums.ts`), checked by {@link readStateDict}.
 *
 * @param model a model of the zoo
 * @param metadata string pairs stored in the file's header
 * @returns the file's bytes
 */
export async function saveWeights(
  model: tf.LayersModel,
  metadata?: Record<string, string>,
): Promise<Uint8Array> {
  const tensors = await stateDict(model);
  return serializeSafetensors(tensors, { format: "pt", ...checksumMetadata(tensors), ...metadata });
}
