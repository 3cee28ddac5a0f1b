/**
 * The antialiased bilinear resize of PIL's `Image.resize(size, BILINEAR)` (what torchvision's
 * `Resize` does on PIL images), on 8-bit RGB images. Pure code with no imports: the data loaders,
 * `deno task predict` and the browser page resize with it alike.
 *
 * @module
 */

/** An 8-bit RGB image, HWC. */
export interface RgbImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** `height * width * 3` bytes. */
  data: Uint8Array;
}

// PIL's fixed-point resampling: coefficients scaled by 2^22, rounded half up after each pass.
const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  ksize: number;
  /** `[first input index, tap count]` for each output index. */
  bounds: Int32Array;
  /** `outSize * ksize` fixed-point weights. */
  weights: Int32Array;
}

/** PIL's `precompute_coeffs` for the bilinear (triangle) filter, then `normalize_coeffs_8bpc`. */
function bilinearCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle filter's support is 1
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xsize; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xsize; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      weights[xx * ksize + x] = Math.trunc(0.5 + w * ONE);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xsize;
  }
  return { ksize, bounds, weights };
}

function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resizes an RGB image with PIL's `BILINEAR` filter: a triangle filter widened by the scale
 * factor when shrinking (antialiased), horizontal pass then vertical pass, each rounded to 8 bits
 * with PIL's fixed-point arithmetic. The aspect ratio is not kept (like `Resize((h, w))`).
 *
 * @param src the image
 * @param size the output width and height
 * @returns the resized image (`src` itself when the size already matches)
 * @example
 * ```ts
 * import { resizeBilinear } from "./resize.ts";
 * const src = { width: 2, height: 1, data: new Uint8Array([0, 0, 0, 200, 100, 50]) };
 * console.log(resizeBilinear(src, { width: 1, height: 1 }).data); // Uint8Array [100, 50, 25]
 * ```
 */
export function resizeBilinear(
  src: RgbImage,
  size: { width: number; height: number },
): RgbImage {
  const { width, height } = size;
  let img = src;
  if (img.width !== width) {
    const { ksize, bounds, weights } = bilinearCoefficients(img.width, width);
    const out = new Uint8Array(img.height * width * 3);
    const inRow = img.width * 3;
    for (let y = 0; y < img.height; y++) {
      for (let xx = 0; xx < width; xx++) {
        const xmin = bounds[2 * xx], xsize = bounds[2 * xx + 1];
        let s0 = HALF, s1 = HALF, s2 = HALF;
        let p = y * inRow + xmin * 3;
        for (let x = 0; x < xsize; x++, p += 3) {
          const w = weights[xx * ksize + x];
          s0 += img.data[p] * w;
          s1 += img.data[p + 1] * w;
          s2 += img.data[p + 2] * w;
        }
        const o = (y * width + xx) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
    img = { width, height: img.height, data: out };
  }
  if (img.height !== height) {
    const { ksize, bounds, weights } = bilinearCoefficients(img.height, height);
    const out = new Uint8Array(height * width * 3);
    const row = width * 3;
    for (let yy = 0; yy < height; yy++) {
      const ymin = bounds[2 * yy], ysize = bounds[2 * yy + 1];
      for (let xc = 0; xc < row; xc++) {
        let s = HALF;
        let p = ymin * row + xc;
        for (let y = 0; y < ysize; y++, p += row) s += img.data[p] * weights[yy * ksize + y];
        out[yy * row + xc] = clip8(s);
      }
    }
    img = { width, height, data: out };
  }
  return img;
}
