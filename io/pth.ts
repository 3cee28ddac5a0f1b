/**
 * PyTorch checkpoints as `torch.save` writes them since torch 1.6: a zip archive holding
 * `<name>/data.pkl` (a pickle of the saved object, tensors as persistent references to storage
 * records) and one record `<name>/data/<key>` of raw little-endian bytes per storage. The zip is
 * read with fflate and the pickle stream with pickleparser; nothing in it is executed: the
 * pickle may name only the globals that a tensor dict needs (torch's tensor rebuild functions,
 * its storage types and `collections.OrderedDict`), and any other global refuses the file.
 *
 * @module
 */
import { PickleParser, type Unzipped, unzipSync } from "../deps.ts";
import { decodeTensorData, DTYPE_BYTES, type SafeDtype, type SafeTensor } from "./safetensors.ts";

/** A state dict read from a checkpoint, and what was done to find it. */
export interface PthContents {
  /** The tensors by name, contiguous, in the order of the file. */
  tensors: Map<string, SafeTensor>;
  /** One line per thing worth telling (a state dict found under `state_dict`, ...). */
  notes: string[];
}

/** torch's storage types, by the name the pickle gives them, and the dtype they hold. */
const STORAGE_DTYPES: Readonly<Record<string, SafeDtype>> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ByteStorage: "U8",
};

// The parser's own values are frozen: a pickle's BUILD opcode (which sets attributes) cannot
// change what was checked when they were made.

/** A storage type named by the pickle (`torch.FloatStorage`). */
class StorageType {
  constructor(readonly name: string) {
    Object.freeze(this);
  }
}

/** A storage record referenced by the pickle's persistent ids. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly type: StorageType,
    readonly numel: number,
  ) {
    Object.freeze(this);
  }
}

/** What `torch._utils._rebuild_tensor_v2` was called with. */
class TensorRef {
  readonly size: readonly number[];
  readonly stride: readonly number[];
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    size: number[],
    stride: number[],
  ) {
    this.size = Object.freeze([...size]);
    this.stride = Object.freeze([...stride]);
    Object.freeze(this);
  }
}

/** Thrown inside the parser; its message is the whole reason. */
class Refusal extends Error {}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function rebuildTensor(storage: unknown, offset: unknown, size: unknown, stride: unknown) {
  if (
    !(storage instanceof StorageRef) || !isCount(offset) || !Array.isArray(size) ||
    !Array.isArray(stride) || size.length !== stride.length || !size.every(isCount) ||
    !stride.every(isCount)
  ) {
    throw new Refusal("a tensor rebuild call with arguments that are not a storage and sizes");
  }
  return new TensorRef(storage, offset, size, stride);
}

/** The only globals a pickle may name. Arrow functions: a pickle cannot `new` them either. */
const ALLOWED: Readonly<Record<string, (...args: unknown[]) => unknown>> = {
  "collections.OrderedDict": () => new Map(),
  "torch._utils._rebuild_tensor": (storage, offset, size, stride) =>
    rebuildTensor(storage, offset, size, stride),
  "torch._utils._rebuild_tensor_v2": (storage, offset, size, stride) =>
    rebuildTensor(storage, offset, size, stride),
  "torch._utils._rebuild_parameter": (data) => {
    if (!(data instanceof TensorRef)) throw new Refusal("a parameter that holds no tensor");
    return data;
  },
};

function resolveGlobal(module: string, name: string): never {
  throw new Refusal(
    `the pickle names the global ${module}.${name}, which is not part of a tensor dict ` +
      "(allowed: torch's tensor rebuild functions and storage types, collections.OrderedDict); " +
      "nothing was executed",
  );
}

function storageType(module: string, name: string): StorageType {
  if (module === "torch" && name in STORAGE_DTYPES) return new StorageType(name);
  if (module === "torch" && name.endsWith("Storage")) {
    throw new Refusal(
      `tensors of torch.${name} are not read (float32, float16, bfloat16, float64, int64, ` +
        "int32 and uint8 are)",
    );
  }
  return resolveGlobal(module, name);
}

/** Reads the pickle with the allow-listed globals; tuples and lists become arrays, dicts Maps. */
function unpickle(pickle: Uint8Array): unknown {
  const parser = new PickleParser({
    nameResolver: {
      resolve: (module: string, name: string) => {
        const fn = ALLOWED[`${module}.${name}`];
        // Storage types are values, not callables; the parser only pushes what this returns.
        return fn ?? (storageType(module, name) as unknown as () => unknown);
      },
    },
    persistentResolver: {
      resolve: (pid: unknown) => {
        if (
          !Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage" ||
          !(pid[1] instanceof StorageType) || typeof pid[2] !== "string" || !isCount(pid[4])
        ) {
          throw new Refusal("a persistent id that is not a torch storage reference");
        }
        return new StorageRef(pid[2], pid[1], pid[4]);
      },
    },
    extensionResolver: {
      resolve: (code: number) => {
        throw new Refusal(`the pickle uses extension code ${code}, which a tensor dict never does`);
      },
    },
    unpicklingTypeOfDictionary: "Map",
    unpicklingTypeOfSet: "array",
  });
  return parser.parse(pickle);
}

/** Whether `bytes` start as a zip archive does (`PK\x03\x04`). */
export function isZipArchive(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 3 &&
    bytes[3] === 4;
}

/**
 * Reads a PyTorch checkpoint: a state dict saved by `torch.save(model.state_dict(), f)`
 * (torch >= 1.6), or a dict holding one under `state_dict` or `model` (a training checkpoint).
 * Tensors may be views (any storage offset and strides); float16, bfloat16 and float64 values
 * are converted to float32 exactly as PyTorch's `.float()` does, int64 stays int64.
 *
 * @param bytes the file's content
 * @param source the file's name, for error messages
 * @returns the tensors by name, and notes on where they were found
 * @throws Error with one line naming `source` and what was expected
 * @example
 * ```ts ignore
 * const { tensors } = parsePth(await Deno.readFile("resnet20.pth"), "resnet20.pth");
 * ```
 */
export function parsePth(bytes: Uint8Array, source = "checkpoint"): PthContents {
  const fail = (what: string): never => {
    throw new Error(`${source}: ${what}`);
  };
  if (!isZipArchive(bytes)) {
    if (bytes[0] === 0x80) {
      fail(
        "a PyTorch checkpoint in the legacy format of torch < 1.6, which is not read; re-save " +
          "it with torch >= 1.6 (torch.save(torch.load(f), f))",
      );
    }
    fail("not a PyTorch checkpoint (not a zip archive; torch.save writes zip files since 1.6)");
  }
  let files: Unzipped;
  try {
    files = unzipSync(bytes);
  } catch (e) {
    return fail(
      `not a readable PyTorch checkpoint (truncated or corrupt zip archive: ${
        (e as Error).message
      })`,
    );
  }
  const pklName = Object.keys(files).find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pklName) return fail("not a PyTorch checkpoint (no <name>/data.pkl in the zip archive)");
  const prefix = pklName.slice(0, -"data.pkl".length);
  const byteorder = files[`${prefix}byteorder`];
  if (byteorder && new TextDecoder().decode(byteorder).trim() !== "little") {
    fail("a big-endian checkpoint, which is not read");
  }

  let root: unknown;
  try {
    root = unpickle(files[pklName]);
  } catch (e) {
    if (e instanceof Refusal) fail(`refused: ${e.message}`);
    return fail(`not a plain tensor dict (its pickle does not read: ${(e as Error).message})`);
  }

  const notes: string[] = [];
  const state = findStateDict(root, notes, fail);
  const tensors = new Map<string, SafeTensor>();
  for (const [name, ref] of state) {
    const storage = files[`${prefix}data/${ref.storage.key}`];
    if (!storage) fail(`corrupt checkpoint: storage record data/${ref.storage.key} is missing`);
    tensors.set(name, materialize(name, ref, storage, fail));
  }
  return { tensors, notes };
}

const describe = (v: unknown): string =>
  v instanceof TensorRef
    ? "tensor"
    : v instanceof Map
    ? "dict"
    : Array.isArray(v)
    ? "list"
    : v === null
    ? "None"
    : typeof v;

function asTensorDict(v: unknown): Map<string, TensorRef> | null {
  if (!(v instanceof Map) || v.size === 0) return null;
  for (const [k, t] of v) if (typeof k !== "string" || !(t instanceof TensorRef)) return null;
  return v as Map<string, TensorRef>;
}

function findStateDict(
  root: unknown,
  notes: string[],
  fail: (what: string) => never,
): Map<string, TensorRef> {
  if (!(root instanceof Map)) return fail(`holds a ${describe(root)}, not a state dict`);
  const direct = asTensorDict(root);
  if (direct) return direct;
  for (const key of ["state_dict", "model"]) {
    const nested = asTensorDict(root.get(key));
    if (nested) {
      const others = [...root.keys()].filter((k) => k !== key).map(String);
      notes.push(
        `read the state dict under "${key}"` +
          (others.length ? ` (the file also holds ${others.join(", ")})` : ""),
      );
      return nested;
    }
  }
  const content = [...root].slice(0, 8).map(([k, v]) => `${String(k)} (${describe(v)})`);
  return fail(
    `no state dict: it holds ${content.join(", ")}${root.size > 8 ? ", ..." : ""}; ` +
      `expected tensors by name, or a dict with "state_dict" or "model"`,
  );
}

/** A tensor's values, contiguous, from its storage record, offset and strides. */
function materialize(
  name: string,
  ref: TensorRef,
  storage: Uint8Array,
  fail: (what: string) => never,
): SafeTensor {
  const dtype = STORAGE_DTYPES[ref.storage.type.name];
  const item = DTYPE_BYTES[dtype];
  const { offset, size, stride } = ref;
  const numel = size.reduce((a, b) => a * b, 1);
  const available = Math.min(ref.storage.numel, Math.floor(storage.byteLength / item));
  const last = offset + size.reduce((s, d, i) => s + (d - 1) * stride[i], 0);
  if (numel > 0 && last >= available) {
    fail(
      `tensor "${name}" [${size}] with strides [${stride}] at offset ${offset} reaches past ` +
        `its storage of ${available} elements (truncated or corrupt file)`,
    );
  }
  let raw: Uint8Array;
  let expected = 1, contiguous = true;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expected) contiguous = false;
    expected *= size[d];
  }
  if (contiguous) {
    raw = storage.slice(offset * item, (offset + numel) * item);
  } else {
    raw = new Uint8Array(numel * item);
    const index = new Array<number>(size.length).fill(0);
    let at = offset;
    for (let i = 0; i < numel; i++) {
      raw.set(storage.subarray(at * item, (at + 1) * item), i * item);
      for (let d = size.length - 1; d >= 0; d--) {
        index[d]++;
        at += stride[d];
        if (index[d] < size[d]) break;
        at -= stride[d] * size[d];
        index[d] = 0;
      }
    }
  }
  return { dtype, shape: [...size], data: decodeTensorData(raw, dtype, numel) };
}
