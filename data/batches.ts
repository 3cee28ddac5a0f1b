/**
 * Turns an {@link ImageDataset} into fixed-size batches of NHWC float32 tensors normalized with
 * mean 0.5 and std 0.5 (the reference code's `transforms.Normalize((0.5,)*3, (0.5,)*3)`), in an order that
 * depends only on `(seed, epoch)`, optionally augmented and resized on the backend. While the
 * caller works on batch k (awaiting GPU reads), batch k+1 is gathered, normalized and uploaded.
 *
 * @module
 */
import { tf } from "../deps.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { augmentImages } from "./augment.ts";
import type { ImageDataset } from "./dataset.ts";

/** One batch; the caller disposes `x` and `y`. */
export interface Batch {
  /** `[size, inputSize, inputSize, 3]` float32, normalized to about [-1, 1]. */
  x: tf.Tensor4D;
  /** `[size]` int32 labels. */
  y: tf.Tensor1D;
  /** Images in this batch (the last one may be smaller unless `dropLast`). */
  size: number;
  /** Dataset indices of the images, in batch order. */
  indices: Int32Array;
}

/** Options of {@link iterateBatches}. */
export interface BatchOptions {
  /** Images per batch (the last batch may hold fewer). */
  batchSize: number;
  /** Whether to shuffle; when false the order is 0, 1, 2, ... */
  shuffle: boolean;
  /** Seed of the shuffle and augmentation. */
  seed: number;
  /** Epoch number: the order depends only on `(seed, epoch)`, so a resumed run repeats it. */
  epoch: number;
  /** Random crop (4-pixel zero padding) and horizontal flip, seeded; false when absent. */
  augment?: boolean;
  /**
   * Side of the tensors handed out; when it differs from the stored size the batch is resized on
   * the backend (`tf.image.resizeBilinear`, half-pixel centers). The stored size when absent.
   */
  inputSize?: number;
  /** Drop a last batch smaller than `batchSize`; false when absent. */
  dropLast?: boolean;
  /**
   * Start at this batch of the epoch (a run resumed mid-epoch); 0 when absent. The batches
   * handed out are the same as those of a full pass from that index on.
   */
  startBatch?: number;
}

/**
 * Number of batches one epoch yields.
 *
 * @param ds the dataset
 * @param opts batch size and whether the last partial batch is dropped
 * @returns the number of batches
 * @example
 * ```ts
 * import { batchCount } from "./batches.ts";
 * import { makeDataset } from "./dataset.ts";
 * const ds = makeDataset({
 *   classNames: ["a"], size: 10, height: 1, width: 1,
 *   pixels: new Uint8Array(30), labels: new Int32Array(10), source: "memory",
 * });
 * console.log(batchCount(ds, { batchSize: 4 }), batchCount(ds, { batchSize: 4, dropLast: true })); // 3 2
 * ```
 */
export function batchCount(
  ds: ImageDataset,
  opts: Pick<BatchOptions, "batchSize" | "dropLast">,
): number {
  checkPositiveInt("batchSize", opts.batchSize);
  return opts.dropLast ? Math.floor(ds.size / opts.batchSize) : Math.ceil(ds.size / opts.batchSize);
}

// (p / 255 - 0.5) / 0.5 computed in float32 steps, as ToTensor then Normalize do in PyTorch.
const NORMALIZED = (() => {
  const table = new Float32Array(256);
  for (let p = 0; p < 256; p++) {
    table[p] = Math.fround(Math.fround(Math.fround(p / 255) - 0.5) / 0.5);
  }
  return table;
})();

/**
 * Converts uint8 pixels to float32 normalized with mean 0.5 and std 0.5: `(p / 255 - 0.5) / 0.5`,
 * so 0 becomes -1 and 255 becomes 1. Element order is kept (HWC stays HWC).
 *
 * @param pixels the uint8 values
 * @param out where to write (a new array when absent); at least `pixels.length` long
 * @returns the float32 values
 * @example
 * ```ts
 * import { normalizePixels } from "./batches.ts";
 * console.log(normalizePixels(new Uint8Array([0, 255]))); // Float32Array [-1, 1]
 * ```
 */
export function normalizePixels(
  pixels: Uint8Array,
  out: Float32Array = new Float32Array(pixels.length),
): Float32Array {
  if (out.length < pixels.length) {
    throw new Error(`normalizePixels: output holds ${out.length} values, need ${pixels.length}`);
  }
  for (let i = 0; i < pixels.length; i++) out[i] = NORMALIZED[pixels[i]];
  return out;
}

/**
 * The order in which one epoch visits the dataset: a permutation of `0..size-1` that depends only
 * on `(seed, epoch)` when shuffling, else the identity.
 *
 * @param size number of images
 * @param opts shuffle, seed and epoch
 * @returns the dataset indices in visiting order
 * @example
 * ```ts
 * import { epochOrder } from "./batches.ts";
 * console.log(epochOrder(4, { shuffle: false, seed: 0, epoch: 0 })); // Int32Array [0, 1, 2, 3]
 * ```
 */
export function epochOrder(
  size: number,
  opts: Pick<BatchOptions, "shuffle" | "seed" | "epoch">,
): Int32Array {
  const order = new Int32Array(size);
  for (let i = 0; i < size; i++) order[i] = i;
  if (opts.shuffle) new Rng(mixSeed(opts.seed, opts.epoch, 1)).shuffle(order);
  return order;
}

/**
 * Yields one epoch of batches. Batch k+1 is prepared (gathered, augmented, normalized, uploaded
 * and resized) in a macrotask scheduled when batch k is handed out, so it runs while the caller
 * awaits GPU work. Each batch's tensors are `tf.keep`-ed, so a caller's scope does not dispose
 * them: the caller disposes `x` and `y`. Leaving the loop early disposes the prefetched batch.
 *
 * @param ds the dataset
 * @param opts batch size, order, augmentation, input size
 * @returns an async generator of batches
 * @example
 * ```ts
 * import { iterateBatches } from "./batches.ts";
 * import { makeDataset } from "./dataset.ts";
 * import { initBackend } from "../backend/backend.ts";
 * await initBackend({ backend: "cpu", log: null });
 * const ds = makeDataset({
 *   classNames: ["a"], size: 5, height: 2, width: 2,
 *   pixels: new Uint8Array(60), labels: new Int32Array(5), source: "memory",
 * });
 * for await (const b of iterateBatches(ds, { batchSize: 2, shuffle: true, seed: 1, epoch: 0 })) {
 *   console.log(b.x.shape); // [2, 2, 2, 3] twice, then [1, 2, 2, 3]
 *   b.x.dispose();
 *   b.y.dispose();
 * }
 * ```
 */
export async function* iterateBatches(
  ds: ImageDataset,
  opts: BatchOptions,
): AsyncGenerator<Batch> {
  const count = batchCount(ds, opts);
  checkInt("seed", opts.seed);
  checkInt("epoch", opts.epoch);
  const inputSize = opts.inputSize ?? ds.height;
  checkPositiveInt("inputSize", inputSize);
  const resize = inputSize !== ds.height || inputSize !== ds.width;
  const order = epochOrder(ds.size, opts);
  // Each batch has its own augmentation stream, so that a pass started at any batch draws the
  // same crops and flips as a full pass.
  const augSeed = mixSeed(opts.seed, opts.epoch, 2);
  const startBatch = opts.startBatch ?? 0;
  checkInt("startBatch", startBatch);
  const per = ds.height * ds.width * 3;

  const prepare = (k: number): Batch => {
    const start = k * opts.batchSize;
    const m = Math.min(opts.batchSize, ds.size - start);
    const indices = order.slice(start, start + m);
    let raw: Uint8Array = new Uint8Array(m * per);
    const labels = new Int32Array(m);
    for (let j = 0; j < m; j++) {
      const i = indices[j];
      raw.set(ds.pixels.subarray(i * per, (i + 1) * per), j * per);
      labels[j] = ds.labels[i];
    }
    if (opts.augment) {
      const rng = new Rng(mixSeed(augSeed, k, 3));
      raw = augmentImages(raw, { count: m, height: ds.height, width: ds.width, rng });
    }
    const values = normalizePixels(raw);
    const stored = tf.tensor4d(values, [m, ds.height, ds.width, 3], "float32");
    let x: tf.Tensor4D = stored;
    if (resize) {
      x = tf.tidy(() => tf.image.resizeBilinear(stored, [inputSize, inputSize], false, true));
      stored.dispose();
    }
    const y = tf.tensor1d(labels, "int32");
    tf.keep(x);
    tf.keep(y);
    return { x, y, size: m, indices };
  };

  const schedule = (k: number): Promise<Batch> => {
    const p = new Promise<Batch>((resolve, reject) => {
      setTimeout(() => {
        try {
          resolve(prepare(k));
        } catch (e) {
          reject(e);
        }
      }, 0);
    });
    p.catch(() => {}); // the error is raised where the batch is awaited
    return p;
  };

  let pending: Promise<Batch> | null = null;
  try {
    let current: Batch | null = startBatch < count ? prepare(startBatch) : null;
    for (let k = startBatch; k < count; k++) {
      pending = k + 1 < count ? schedule(k + 1) : null;
      const batch = current!;
      current = null;
      yield batch;
      if (pending) {
        const next = pending;
        pending = null;
        current = await next;
      }
    }
  } finally {
    if (pending) {
      try {
        const left = await pending;
        left.x.dispose();
        left.y.dispose();
      } catch {
        // the batch failed to build: nothing to dispose
      }
    }
  }
}

/** A 32-bit seed mixed from integers (FNV-1a over words, then a finalizer). */
function mixSeed(...values: number[]): number {
  let h = 0x811c9dc5;
  for (const v of values) {
    const lo = v >>> 0;
    const hi = Math.floor(v / 4294967296) >>> 0;
    for (const w of [lo, hi]) {
      h = Math.imul(h ^ w, 0x01000193) >>> 0;
      h = (h ^ (h >>> 15)) >>> 0;
    }
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

function checkInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v)) throw new UserError(`${name}: expected an integer, got ${v}`);
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new UserError(`${name}: expected a positive integer, got ${v}`);
  }
}
