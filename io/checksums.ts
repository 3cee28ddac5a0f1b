/**
 * Checksums of a safetensors file's tensors, kept in its header's `__metadata__` (string to
 * string, which PyTorch's `safetensors.torch.load_file` ignores): `crc32` holds a JSON object
 * from tensor name to the CRC-32 (IEEE, as zlib's) of that tensor's stored bytes, in hex.
 *
 * CRC-32 and not a cryptographic hash: it guards against accidents (a flipped bit, a bad sector,
 * a torn write), not against an attacker; it catches every error of up to 32 consecutive bits;
 * it is synchronous and cheap (no `crypto.subtle` round trip per tensor); and one per tensor
 * names the tensor whose bytes differ.
 *
 * @module
 */
import type { SafeTensor } from "./safetensors.ts";

/** The metadata key of the per-tensor checksums. */
export const CHECKSUM_KEY = "crc32";

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * The CRC-32 (IEEE 802.3, zlib's `crc32`) of `bytes`.
 *
 * @param bytes the data
 * @returns the checksum, an unsigned 32-bit integer
 * @example
 * ```ts
 * import { crc32 } from "./checksums.ts";
 * console.log(crc32(new TextEncoder().encode("123456789")).toString(16)); // cbf43926
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/**
 * The metadata entry holding the checksum of each tensor's bytes, as `serializeSafetensors`
 * writes them.
 *
 * @param tensors the tensors to be written
 * @returns `{ crc32: "{\"name\":\"hex\",...}" }`, to spread into the file's metadata
 * @example
 * ```ts
 * import { checksumMetadata } from "./checksums.ts";
 * const t = { dtype: "F32" as const, shape: [1], data: new Float32Array([1]) };
 * console.log(Object.keys(checksumMetadata(new Map([["w", t]])))); // ["crc32"]
 * ```
 */
export function checksumMetadata(tensors: Map<string, SafeTensor>): Record<string, string> {
  const sums: Record<string, string> = {};
  for (const [name, t] of [...tensors].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    sums[name] = hex(crc32(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
  }
  return { [CHECKSUM_KEY]: JSON.stringify(sums) };
}

/**
 * Checks the stored bytes of every tensor against the checksums in the file's metadata; a file
 * without them passes (weights from PyTorch, older runs). Reads the header itself, so that the
 * bytes checked are the file's, before any decoding.
 *
 * @param bytes a safetensors file (already parsed once: its header is valid)
 * @returns `null` when the checksums match or there are none, else one line naming the first
 * tensor (in file order) whose bytes differ
 */
export function checksumMismatch(bytes: Uint8Array): string | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const stored = header?.["__metadata__"]?.[CHECKSUM_KEY];
  if (typeof stored !== "string") return null;
  let sums: Record<string, string>;
  try {
    sums = JSON.parse(stored);
  } catch {
    return "its tensor checksums (metadata crc32) are not JSON: the header is corrupt";
  }
  const start = 8 + headerLength;
  const entries = Object.entries(header as Record<string, { data_offsets?: [number, number] }>)
    .filter(([name]) => name !== "__metadata__")
    .sort(([, a], [, b]) => (a.data_offsets?.[0] ?? 0) - (b.data_offsets?.[0] ?? 0));
  for (const [name, entry] of entries) {
    const [begin, end] = entry.data_offsets ?? [0, 0];
    const want = sums[name];
    if (want === undefined) return `tensor ${name} has no checksum: the header is corrupt`;
    const got = hex(crc32(bytes.subarray(start + begin, start + end)));
    if (got !== want) {
      return `tensor ${name} fails its CRC-32 checksum (stored ${want}, computed ${got}): ` +
        `its bytes are corrupt`;
    }
  }
  const missing = Object.keys(sums).find((name) => !(name in header));
  return missing ? `tensor ${missing} is listed in its checksums but absent` : null;
}
