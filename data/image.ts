/**
 * Image decoding (JPEG through `jpeg-js`, PNG through `fast-png`) to 8-bit RGB, and the
 * antialiased bilinear resize of PIL's `Image.resize(size, BILINEAR)`, which is what
 * torchvision's `Resize` does on PIL images.
 *
 * @module
 */
import { jpeg } from "../deno_deps.ts";
import { convertIndexedToRgb, type DecodedPng, decodePng } from "../deno_deps.ts";

/** An 8-bit RGB image, HWC. */
export interface RgbImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** `height * width * 3` bytes. */
  data: Uint8Array;
}

/** The image formats {@link decodeImage} reads. */
export type ImageFormat = "jpeg" | "png";

/**
 * The format of encoded image bytes, from their signature, or `null` for anything else.
 *
 * @param bytes the start of the file (at least 8 bytes for PNG)
 * @returns `"jpeg"`, `"png"` or `null`
 * @example
 * ```ts
 * import { sniffImageFormat } from "./image.ts";
 * console.log(sniffImageFormat(new Uint8Array([0xff, 0xd8, 0xff, 0xe0]))); // "jpeg"
 * ```
 */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return "jpeg";
  }
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length >= 8 && png.every((b, i) => bytes[i] === b)) return "png";
  return null;
}

/**
 * Decodes a JPEG or PNG (any color type and bit depth) to 8-bit RGB, as PIL's `convert("RGB")`
 * does: alpha is dropped, gray is copied to the three channels, 16-bit samples keep their high
 * byte, palettes are expanded. Throws an `Error` saying what is wrong for anything else,
 * including truncated files.
 *
 * @param bytes the encoded file
 * @returns the decoded image
 * @example
 * ```ts
 * import { decodeImage } from "./image.ts";
 * import { encode } from "npm:fast-png@8.0.0";
 * const png = encode({ width: 1, height: 1, data: new Uint8Array([10, 20, 30]), channels: 3 });
 * console.log(decodeImage(png).data); // Uint8Array [10, 20, 30]
 * ```
 */
export function decodeImage(bytes: Uint8Array): RgbImage {
  const format = sniffImageFormat(bytes);
  if (format === "jpeg") return decodeJpeg(bytes);
  if (format === "png") return pngToRgb(decodePng(bytes));
  throw new Error("not a JPEG or PNG file (unknown signature)");
}

function decodeJpeg(bytes: Uint8Array): RgbImage {
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
  const n = img.width * img.height;
  if (n === 0) throw new Error("JPEG has no pixels");
  const data = new Uint8Array(n * 3);
  const rgba = img.data;
  for (let i = 0; i < n; i++) {
    data[3 * i] = rgba[4 * i];
    data[3 * i + 1] = rgba[4 * i + 1];
    data[3 * i + 2] = rgba[4 * i + 2];
  }
  return { width: img.width, height: img.height, data };
}

function pngToRgb(png: DecodedPng): RgbImage {
  const { width, height } = png;
  const n = width * height;
  if (n === 0) throw new Error("PNG has no pixels");
  const data = new Uint8Array(n * 3);
  if (png.palette) {
    const expanded = convertIndexedToRgb(png);
    const c = expanded.length / n;
    for (let i = 0; i < n; i++) {
      data[3 * i] = expanded[c * i];
      data[3 * i + 1] = expanded[c * i + 1];
      data[3 * i + 2] = expanded[c * i + 2];
    }
    return { width, height, data };
  }
  const c = png.channels;
  const depth = png.depth;
  let samples: ArrayLike<number> = png.data;
  if (depth < 8) {
    // Gray at 1, 2 or 4 bits: rows are packed; expand to 0..255 as PIL does.
    const unpacked = new Uint8Array(n * c);
    const rowBytes = Math.ceil((width * c * depth) / 8);
    const max = (1 << depth) - 1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width * c; x++) {
        const bit = x * depth;
        const byte = png.data[y * rowBytes + (bit >> 3)];
        const v = (byte >> (8 - depth - (bit & 7))) & max;
        unpacked[y * width * c + x] = Math.round((v * 255) / max);
      }
    }
    samples = unpacked;
  }
  const shift = depth === 16 ? 8 : 0;
  if (samples.length < n * c) throw new Error("PNG pixel data is shorter than its size");
  for (let i = 0; i < n; i++) {
    const s = i * c;
    if (c <= 2) {
      const g = samples[s] >> shift;
      data[3 * i] = g;
      data[3 * i + 1] = g;
      data[3 * i + 2] = g;
    } else {
      data[3 * i] = samples[s] >> shift;
      data[3 * i + 1] = samples[s + 1] >> shift;
      data[3 * i + 2] = samples[s + 2] >> shift;
    }
  }
  return { width, height, data };
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
 * import { resizeBilinear } from "./image.ts";
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

/**
 * Decodes a JPEG or PNG and resizes it to a `size x size` square with {@link resizeBilinear}:
 * what the folder loader does to every image of a dataset, and what prediction does to a photo.
 *
 * @param bytes the encoded file
 * @param size the side of the square
 * @returns the decoded, resized image
 * @throws Error saying what is wrong for a file that is not a readable JPEG or PNG
 * @example
 * ```ts
 * import { decodeResized } from "./image.ts";
 * import { encode } from "npm:fast-png@8.0.0";
 * const data = new Uint8Array([0, 0, 0, 200, 100, 50]);
 * const png = encode({ width: 2, height: 1, data, channels: 3 });
 * console.log(decodeResized(png, 1).data); // Uint8Array [100, 50, 25]
 * ```
 */
export function decodeResized(bytes: Uint8Array, size: number): RgbImage {
  return resizeBilinear(decodeImage(bytes), { width: size, height: size });
}
