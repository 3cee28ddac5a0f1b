/**
 * Image decoding (JPEG through `jpeg-js`, PNG through `fast-png`) to 8-bit RGB, and decoding
 * with the resize of `resize.ts` (PIL's antialiased bilinear, as torchvision's `Resize`).
 *
 * @module
 */
import { jpeg } from "../deno_deps.ts";
import { convertIndexedToRgb, type DecodedPng, decodePng } from "../deno_deps.ts";
import { resizeBilinear, type RgbImage } from "./resize.ts";

export { resizeBilinear, type RgbImage };

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
