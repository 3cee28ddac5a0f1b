/**
 * The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
 * giving each tensor's dtype, shape and byte range, then the raw little-endian data. This is the
 * file `safetensors.torch.save_file(model.state_dict(), path)` writes.
 *
 * @module
 */

/** The dtypes read and written here. */
export type SafeDtype = "F32" | "F64" | "F16" | "BF16" | "I64" | "I32" | "U8";

/** One tensor of a safetensors file. */
export interface SafeTensor {
  /** The stored dtype. */
  dtype: SafeDtype;
  /** The shape (`[]` for a scalar). */
  shape: number[];
  /** The values: `Float32Array` for F32/F16/BF16/F64 (converted), `BigInt64Array` for I64, ... */
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array;
}

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<SafeDtype, number>> = {
  F32: 4,
  F64: 8,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  U8: 1,
};

/**
 * Reads a safetensors buffer.
 *
 * @param bytes the file's content
 * @param source the file's name, for error messages
 * @returns the tensors by name and the header's `__metadata__`
 */
export function parseSafetensors(
  bytes: Uint8Array,
  source = "safetensors data",
): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  const fail = (what: string): never => {
    throw new Error(`${source}: not a valid safetensors file (${what})`);
  };
  if (bytes.byteLength < 8) fail("shorter than its 8-byte header length");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.byteLength - 8) {
    // A JSON header that the file ends inside of: the file was cut short.
    if (bytes.byteLength > 8 && bytes[8] === 0x7b && headerLength < 100_000_000) {
      throw new Error(
        `${source}: truncated file: expected at least ${8 + headerLength} bytes (its header ` +
          `alone), has ${bytes.byteLength}`,
      );
    }
    fail(`header length ${headerLength} past the end`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch {
    return fail("header is not JSON");
  }
  const dataStart = 8 + headerLength;
  // The file's size from its header: the end of the last tensor's bytes.
  let expected = dataStart;
  for (const [name, entry] of Object.entries(header)) {
    const end = name === "__metadata__"
      ? 0
      : (entry as { data_offsets?: unknown[] })?.data_offsets?.[1];
    if (typeof end === "number" && Number.isFinite(end)) {
      expected = Math.max(expected, dataStart + end);
    }
  }
  if (expected > bytes.byteLength) {
    throw new Error(
      `${source}: truncated file: expected ${expected} bytes, has ${bytes.byteLength}`,
    );
  }
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = entry as {
      dtype: SafeDtype;
      shape: number[];
      data_offsets: [number, number];
    };
    if (!(dtype in DTYPE_BYTES)) fail(`tensor "${name}" has unsupported dtype ${dtype}`);
    const count = shape.reduce((a, b) => a * b, 1);
    const [begin, end] = offsets;
    if (end - begin !== count * DTYPE_BYTES[dtype] || dataStart + end > bytes.byteLength) {
      fail(`tensor "${name}" byte range [${begin}, ${end}) does not fit shape [${shape}]`);
    }
    const raw = bytes.slice(dataStart + begin, dataStart + end); // a copy, aligned
    tensors.set(name, { dtype, shape, data: decodeTensorData(raw, dtype, count) });
  }
  return { tensors, metadata };
}

/**
 * Decodes `count` little-endian elements of `dtype` (floats other than F32 converted to float32).
 *
 * @param raw the bytes, starting at offset 0 of their own buffer (so aligned)
 * @param dtype the stored dtype
 * @param count the number of elements
 * @returns the values as {@link SafeTensor} holds them
 */
export function decodeTensorData(
  raw: Uint8Array,
  dtype: SafeDtype,
  count: number,
): SafeTensor["data"] {
  const buffer = raw.buffer;
  if (raw.byteOffset !== 0) throw new Error("decodeTensorData: raw must start its buffer");
  switch (dtype) {
    case "F32":
      return new Float32Array(buffer, 0, count);
    case "F64":
      return Float32Array.from(new Float64Array(buffer, 0, count));
    case "F16": {
      const view = new DataView(buffer);
      return Float32Array.from(
        { length: count },
        (_, i) => halfToFloat(view.getUint16(2 * i, true)),
      );
    }
    case "BF16": {
      const view = new DataView(buffer);
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case "I64":
      return new BigInt64Array(buffer, 0, count);
    case "I32":
      return new Int32Array(buffer, 0, count);
    case "U8":
      return new Uint8Array(buffer, 0, count);
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/**
 * Writes tensors as a safetensors buffer, in name order, each 8-byte aligned as the reference
 * implementation does.
 *
 * @param tensors the tensors by name
 * @param metadata string pairs stored in the header's `__metadata__`
 * @returns the file's content
 */
export function serializeSafetensors(
  tensors: Map<string, SafeTensor> | Record<string, SafeTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors))
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
  const header: Record<string, unknown> = {};
  if (metadata) header["__metadata__"] = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (t.data.BYTES_PER_ELEMENT !== DTYPE_BYTES[t.dtype]) {
      throw new Error(
        `safetensors: tensor "${name}" holds ${t.data.constructor.name}, not ${t.dtype}`,
      );
    }
    const size = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    json = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(padded - json.byteLength));
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const [, t] of entries) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}
