/**
 * Deterministic weights, inputs and labels shared with the PyTorch fixture generator
 * (`tests/fixtures/make_fixtures.py`): the same key gives bit-identical values in both, so the
 * fixtures never store weights. See `tests/fixtures/README.md` for the rules.
 *
 * @module
 */

const FNV_OFFSET = 2166136261;
const FNV_PRIME = 16777619;
const TWO_POW_24 = 16777216;

/**
 * FNV-1a 32-bit hash of the UTF-8 bytes of a string.
 *
 * @param key any string
 * @returns the hash as an unsigned 32-bit integer
 * @example
 * ```ts
 * import { fnv1a32 } from "./det.ts";
 * fnv1a32(""); // 2166136261
 * ```
 */
export function fnv1a32(key: string): number {
  let h = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(key)) {
    h = Math.imul(h ^ byte, FNV_PRIME) >>> 0;
  }
  return h;
}

/** MurmurHash3's 32-bit finalizer: keys differing in one character get unrelated seeds. */
export function fmix32(h: number): number {
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * `n` deterministic values in [-1, 1): xorshift32 seeded with `fmix32(fnv1a32(key))` (1 if 0),
 * each value `(state >>> 8) / 2**24 * 2 - 1`. The first `m` values do not depend on `n`.
 *
 * @param key the seed string (a state-dict name, `input.a`, `labels.b`, ...)
 * @param n how many values
 * @returns the values, exactly as the Python generator computes them in float64
 * @example
 * ```ts
 * import { detUniform } from "./det.ts";
 * const v = detUniform("input.a", 3); // Float64Array of 3 values in [-1, 1)
 * ```
 */
export function detUniform(key: string, n: number): Float64Array {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be a count, got ${n}`);
  const out = new Float64Array(n);
  let s = fmix32(fnv1a32(key)) || 1;
  for (let i = 0; i < n; i++) {
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    out[i] = (s >>> 8) / TWO_POW_24 * 2 - 1;
  }
  return out;
}

/**
 * Number of elements of a tensor shape (1 for a scalar `[]`).
 *
 * @param shape the dimensions
 * @returns their product
 */
export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * The deterministic value of a PyTorch state-dict entry, in PyTorch's layout flattened
 * row-major (OIHW for convolutions, [out, in] for linear layers). Computed in float64, then
 * rounded to float32:
 * `running_mean` 0.1u; `running_var` 0.75 + 0.25u; `num_batches_tracked` 0 (int64);
 * `weight` of rank >= 2: u * sqrt(3 / fan_in) with fan_in = numel / shape[0];
 * `weight` of rank 1: 1 + 0.25u; `bias`: 0.1u; where u = `detUniform(key, numel)`.
 *
 * @param key the state-dict name, e.g. `layer1.0.conv1.weight`
 * @param torchShape the tensor's shape in PyTorch's layout
 * @returns a Float32Array, or a BigInt64Array of zeros for `num_batches_tracked`
 * @example
 * ```ts
 * import { detStateValue } from "./det.ts";
 * const w = detStateValue("conv1.weight", [16, 3, 3, 3]); // Float32Array(432)
 * ```
 */
export function detStateValue(
  key: string,
  torchShape: readonly number[],
): Float32Array | BigInt64Array {
  const numel = numelOf(torchShape);
  if (key.endsWith("num_batches_tracked")) return new BigInt64Array(numel);
  const u = detUniform(key, numel);
  let f: (v: number) => number;
  if (key.endsWith("running_mean")) f = (v) => 0.1 * v;
  else if (key.endsWith("running_var")) f = (v) => 0.75 + 0.25 * v;
  else if (key.endsWith("weight") && torchShape.length >= 2) {
    const scale = Math.sqrt(3 / (numel / torchShape[0]));
    f = (v) => v * scale;
  } else if (key.endsWith("weight") && torchShape.length === 1) f = (v) => 1 + 0.25 * v;
  else if (key.endsWith("bias")) f = (v) => 0.1 * v;
  else {
    throw new Error(
      `no deterministic rule for state-dict key "${key}" of shape [${torchShape}]; valid ` +
        "suffixes are running_mean, running_var, num_batches_tracked, weight, bias",
    );
  }
  const out = new Float32Array(numel);
  for (let i = 0; i < numel; i++) out[i] = f(u[i]);
  return out;
}

/**
 * A deterministic input batch in NCHW layout: `detUniform(key, N*C*H*W)` rounded to float32.
 *
 * @param key `input.a` or `input.b` in the fixtures
 * @param shape `[N, C, H, W]`
 * @returns the values, NCHW row-major
 * @example
 * ```ts
 * import { detInput, nchwToNhwc } from "./det.ts";
 * const x = nchwToNhwc(detInput("input.a", [4, 3, 32, 32]), [4, 3, 32, 32]);
 * ```
 */
export function detInput(key: string, shape: readonly number[]): Float32Array {
  if (shape.length !== 4) throw new RangeError(`detInput wants [N, C, H, W], got [${shape}]`);
  return Float32Array.from(detUniform(key, numelOf(shape)));
}

/**
 * Deterministic class labels: `min(C - 1, floor((u + 1) / 2 * C))` for u = `detUniform(key, n)`.
 *
 * @param key `labels.a` or `labels.b` in the fixtures
 * @param n how many labels
 * @param numClasses the number of classes C
 * @returns labels in [0, C)
 * @example
 * ```ts
 * import { detLabels } from "./det.ts";
 * detLabels("labels.a", 4, 10); // Int32Array of 4 labels in 0..9
 * ```
 */
export function detLabels(key: string, n: number, numClasses: number): Int32Array {
  const u = detUniform(key, n);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = Math.min(numClasses - 1, Math.floor((u[i] + 1) / 2 * numClasses));
  }
  return out;
}

/**
 * Reorders an NCHW tensor's data to NHWC (the layout tfjs uses for images).
 *
 * @param data the values, NCHW row-major
 * @param shape `[N, C, H, W]`
 * @returns a new array with the same values, NHWC row-major
 * @example
 * ```ts
 * import { nchwToNhwc } from "./det.ts";
 * nchwToNhwc(new Float32Array([1, 2, 3, 4]), [1, 2, 1, 2]); // [1, 3, 2, 4]
 * ```
 */
export function nchwToNhwc(data: Float32Array, shape: readonly number[]): Float32Array {
  const [n, c, h, w] = shape;
  if (shape.length !== 4 || data.length !== n * c * h * w) {
    throw new RangeError(`nchwToNhwc: ${data.length} values do not fit shape [${shape}]`);
  }
  const out = new Float32Array(data.length);
  const hw = h * w;
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const src = (b * c + ch) * hw;
      for (let p = 0; p < hw; p++) out[(b * hw + p) * c + ch] = data[src + p];
    }
  }
  return out;
}

/**
 * The flat indices the fixtures sample from a tensor of `numel` elements when it has more than
 * `count` of them: `floor((j + 0.5) * numel / count)` for j in 0..count-1.
 *
 * @param numel the tensor's element count
 * @param count how many samples (the fixtures use 64)
 * @returns the sorted indices
 * @example
 * ```ts
 * import { sampleIndices } from "./det.ts";
 * sampleIndices(128, 64)[0]; // 1
 * ```
 */
export function sampleIndices(numel: number, count = 64): number[] {
  return Array.from({ length: count }, (_, j) => Math.floor((2 * j + 1) * numel / (2 * count)));
}
