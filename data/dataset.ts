/**
 * The in-memory form every loader produces: all images of one split as one `Uint8Array` of RGB
 * pixels (HWC per image, images back to back) and one `Int32Array` of labels. No per-image
 * objects, so a 50,000-image CIFAR split costs its pixel bytes and little more.
 *
 * @module
 */
import { UserError } from "../util/errors.ts";

/** One split of an image-classification dataset, held as flat typed arrays. */
export interface ImageDataset {
  /** Class names in label order: label `i` is `classNames[i]`. */
  readonly classNames: readonly string[];
  /** Number of images. */
  readonly size: number;
  /** Stored image height in pixels (all images equal). */
  readonly height: number;
  /** Stored image width in pixels (all images equal). */
  readonly width: number;
  /** `size * height * width * 3` bytes: RGB, HWC per image, images back to back. */
  readonly pixels: Uint8Array;
  /** `size` labels in `[0, classNames.length)`. */
  readonly labels: Int32Array;
  /** The path the images came from, for messages. */
  readonly source: string;
}

/**
 * Checks that the fields of a dataset agree (array lengths, label range) and returns it frozen.
 * Loaders call it once; a failure is a programming error, not a user error.
 *
 * @param ds the dataset to check
 * @returns the same dataset, frozen
 * @example
 * ```ts
 * import { makeDataset } from "./dataset.ts";
 * const ds = makeDataset({
 *   classNames: ["a", "b"], size: 1, height: 1, width: 1,
 *   pixels: new Uint8Array(3), labels: new Int32Array([1]), source: "memory",
 * });
 * console.log(ds.size); // 1
 * ```
 */
export function makeDataset(ds: ImageDataset): ImageDataset {
  const per = ds.height * ds.width * 3;
  if (ds.pixels.length !== ds.size * per) {
    throw new Error(
      `${ds.source}: pixels hold ${ds.pixels.length} bytes, expected ${ds.size} x ${per}`,
    );
  }
  if (ds.labels.length !== ds.size) {
    throw new Error(`${ds.source}: ${ds.labels.length} labels for ${ds.size} images`);
  }
  const k = ds.classNames.length;
  for (let i = 0; i < ds.size; i++) {
    const l = ds.labels[i];
    if (l < 0 || l >= k) throw new Error(`${ds.source}: label ${l} of image ${i} not in [0, ${k})`);
  }
  return Object.freeze({ ...ds, classNames: Object.freeze([...ds.classNames]) });
}

/**
 * The first `n` images of a dataset (`--limit N`), as views on the same buffers: no copy.
 * `n` larger than the dataset gives the whole dataset.
 *
 * @param ds the dataset
 * @param n how many images to keep (a non-negative integer)
 * @returns a dataset sharing `ds`'s memory
 * @example
 * ```ts
 * import { makeDataset, takeFirst } from "./dataset.ts";
 * const ds = makeDataset({
 *   classNames: ["a"], size: 3, height: 1, width: 1,
 *   pixels: new Uint8Array(9), labels: new Int32Array(3), source: "memory",
 * });
 * console.log(takeFirst(ds, 2).size); // 2
 * ```
 */
export function takeFirst(ds: ImageDataset, n: number): ImageDataset {
  if (!Number.isInteger(n) || n < 0) {
    throw new UserError(`--limit: expected a non-negative integer, got ${n}`);
  }
  if (n >= ds.size) return ds;
  const per = ds.height * ds.width * 3;
  return Object.freeze({
    classNames: ds.classNames,
    size: n,
    height: ds.height,
    width: ds.width,
    pixels: ds.pixels.subarray(0, n * per),
    labels: ds.labels.subarray(0, n),
    source: ds.source,
  });
}

/**
 * How many images each class has.
 *
 * @param ds the dataset
 * @returns `counts[label]` for every label
 * @example
 * ```ts
 * import { classCounts, makeDataset } from "./dataset.ts";
 * const ds = makeDataset({
 *   classNames: ["a", "b"], size: 3, height: 1, width: 1,
 *   pixels: new Uint8Array(9), labels: new Int32Array([0, 1, 1]), source: "memory",
 * });
 * console.log(classCounts(ds)); // [1, 2]
 * ```
 */
export function classCounts(ds: ImageDataset): number[] {
  const counts = new Array<number>(ds.classNames.length).fill(0);
  for (let i = 0; i < ds.size; i++) counts[ds.labels[i]]++;
  return counts;
}
