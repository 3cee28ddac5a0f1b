/**
 * Training-time augmentation on uint8 HWC pixels, seeded: the CIFAR recipe of torchvision's
 * `RandomCrop(size, padding=4)` (zero padding) followed by `RandomHorizontalFlip(p=0.5)`.
 * Off by default, as in the reference code; `augment: true` in the batch options turns it on.
 *
 * @module
 */
import type { Rng } from "../util/rng.ts";

/** What {@link augmentImages} works on, and how. */
export interface AugmentOptions {
  /** Number of images held back to back in the source. */
  count: number;
  /** Image height in pixels. */
  height: number;
  /** Image width in pixels. */
  width: number;
  /** The seeded generator the shifts and flips are drawn from. */
  rng: Rng;
  /** Where the augmented images go (same length as the source, not overlapping it); new when absent. */
  out?: Uint8Array;
  /** Zero padding on each side before the random crop, in pixels; 4 when absent. */
  padding?: number;
  /** Whether to flip horizontally with probability 0.5; true when absent. */
  flip?: boolean;
}

/**
 * Randomly crops (after zero padding) and flips `count` images held back to back in `src`.
 * Each image draws, in order, its horizontal shift, its vertical shift and its flip from `rng`,
 * so equal generator states give equal results.
 *
 * @param src `count * height * width * 3` bytes, RGB HWC per image
 * @param options image count and size, generator, output buffer, padding and flip
 * @returns the augmented images (`options.out` when given)
 * @example
 * ```ts
 * import { augmentImages } from "./augment.ts";
 * import { Rng } from "../util/rng.ts";
 * const src = new Uint8Array(2 * 8 * 8 * 3).fill(255);
 * const out = augmentImages(src, { count: 2, height: 8, width: 8, rng: new Rng(1) });
 * console.log(out.length); // 384
 * ```
 */
export function augmentImages(src: Uint8Array, options: AugmentOptions): Uint8Array {
  const { count, height, width, rng } = options;
  const pad = options.padding ?? 4;
  const flip = options.flip ?? true;
  const per = height * width * 3;
  const dst = options.out ?? new Uint8Array(count * per);
  if (src.length < count * per || dst.length < count * per) {
    throw new Error(`augmentImages: buffers hold fewer than ${count} images of ${height}x${width}`);
  }
  const row = width * 3;
  for (let i = 0; i < count; i++) {
    // Output (y, x) reads input (y + dy, x + dx); dy, dx in [-pad, pad]: the crop window's
    // top-left corner in the padded image is (dy + pad, dx + pad), uniform as in RandomCrop.
    const dx = rng.int(2 * pad + 1) - pad;
    const dy = rng.int(2 * pad + 1) - pad;
    const mirrored = flip && rng.next() < 0.5;
    const base = i * per;
    for (let y = 0; y < height; y++) {
      const sy = y + dy;
      const outRow = base + y * row;
      if (sy < 0 || sy >= height) {
        dst.fill(0, outRow, outRow + row);
        continue;
      }
      const inRow = base + sy * row;
      for (let x = 0; x < width; x++) {
        // The flip is applied after the crop: output column x shows crop column width-1-x.
        const cx = mirrored ? width - 1 - x : x;
        const sx = cx + dx;
        const o = outRow + x * 3;
        if (sx < 0 || sx >= width) {
          dst[o] = 0;
          dst[o + 1] = 0;
          dst[o + 2] = 0;
        } else {
          const s = inRow + sx * 3;
          dst[o] = src[s];
          dst[o + 1] = src[s + 1];
          dst[o + 2] = src[s + 2];
        }
      }
    }
  }
  return dst;
}
