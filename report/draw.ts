/**
 * The drawing stack shared by the report pictures: Skia's CanvasKit compiled to WebAssembly
 * (`canvaskit-wasm`, a CPU raster surface, anti-aliased text and lines, PNG encoding) with the
 * DejaVu Sans TrueType font from the `dejavu-fonts-ttf` npm package. Nothing here needs a GPU,
 * a browser or a native library; it needs read access to the npm cache (`--allow-read`).
 *
 * @module
 */
// canvaskit-wasm is CommonJS (`module.exports = CanvasKitInit; module.exports.default =
// CanvasKitInit`) with an ES-style `.d.ts`: Deno types the default import as the whole module,
// so `canvaskit.default` is the init function both at run time and for the type checker.
import {
  type Canvas,
  type CanvasKit,
  canvaskit,
  DEJAVU_SANS_URL,
  type Font,
  type Paint,
  type Typeface,
} from "../deno_deps.ts";
import { UserError } from "../util/errors.ts";

export type { Canvas, CanvasKit, Font, Paint, Typeface };

/** An RGB colour, 0..255 a channel. */
export type Rgb = readonly [number, number, number];

/** What drawing needs: the CanvasKit module and the loaded typeface. */
export interface Drawing {
  /** The CanvasKit module. */
  ck: CanvasKit;
  /** DejaVu Sans. */
  typeface: Typeface;
}

let drawingReady: Promise<Drawing> | null = null;

/**
 * Starts CanvasKit and loads DejaVu Sans, once per process; later calls return the same promise.
 *
 * @returns the CanvasKit module and the typeface
 * @example
 * ```ts
 * import { loadDrawing } from "./draw.ts";
 * const { ck, typeface } = await loadDrawing();
 * console.assert(typeof ck.MakeSurface === "function" && typeface !== null);
 * ```
 */
export function loadDrawing(): Promise<Drawing> {
  if (drawingReady === null) {
    drawingReady = initDrawing().catch((err) => {
      drawingReady = null;
      throw err;
    });
  }
  return drawingReady;
}

async function initDrawing(): Promise<Drawing> {
  const url = DEJAVU_SANS_URL;
  if (!url.startsWith("file:")) {
    throw new UserError(`cannot locate the font DejaVuSans.ttf on disk (resolved to ${url})`);
  }
  const path = new URL(url);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    throw new UserError(`cannot read the font file ${path.pathname}: ${(err as Error).message}`);
  }
  const ck = await canvaskit.default();
  const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const typeface = ck.Typeface.MakeTypefaceFromData(data as ArrayBuffer);
  if (typeface === null) throw new UserError(`the font file ${path.pathname} could not be read`);
  return { ck, typeface };
}

/**
 * Draws on a white raster canvas of the given size and returns the picture as PNG bytes.
 * Every CanvasKit object the callback makes must be deleted by the callback (or registered
 * with `keep`, which deletes it afterwards).
 *
 * @param width picture width in pixels
 * @param height picture height in pixels
 * @param draw draws on the canvas; `keep(obj)` returns `obj` and deletes it when drawing ends
 * @returns the PNG file's bytes
 * @example
 * ```ts
 * import { renderPng } from "./draw.ts";
 * const png = await renderPng(8, 8, (canvas, { ck }) => canvas.clear(ck.BLACK));
 * console.assert(png[1] === 0x50); // "PNG"
 * ```
 */
export async function renderPng(
  width: number,
  height: number,
  draw: (canvas: Canvas, drawing: Drawing, keep: <T extends { delete(): void }>(o: T) => T) => void,
): Promise<Uint8Array> {
  const drawing = await loadDrawing();
  const { ck } = drawing;
  const surface = ck.MakeSurface(width, height);
  if (surface === null) throw new RangeError(`cannot make a ${width}x${height} canvas`);
  const owned: { delete(): void }[] = [];
  const keep = <T extends { delete(): void }>(o: T): T => {
    owned.push(o);
    return o;
  };
  try {
    const canvas = surface.getCanvas();
    canvas.clear(ck.WHITE);
    draw(canvas, drawing, keep);
    surface.flush();
    const image = surface.makeImageSnapshot();
    try {
      const png = image.encodeToBytes(ck.ImageFormat.PNG, 100);
      if (png === null) throw new Error("CanvasKit could not encode the picture as PNG");
      return png.slice();
    } finally {
      image.delete();
    }
  } finally {
    for (const o of owned.reverse()) o.delete();
    surface.delete();
  }
}

/**
 * Advance width of a text in a font.
 *
 * @param font a CanvasKit font
 * @param text the text
 * @returns the width in pixels
 */
export function textWidth(font: Font, text: string): number {
  const widths = font.getGlyphWidths(font.getGlyphIDs(text));
  let sum = 0;
  for (const w of widths) sum += w;
  return sum;
}

/**
 * A CanvasKit colour from an RGB triple.
 *
 * @param ck the CanvasKit module
 * @param rgb red, green, blue in 0..255
 * @param alpha opacity in 0..1
 * @returns the colour
 */
export function skColor(ck: CanvasKit, rgb: Rgb, alpha = 1): Float32Array {
  return ck.Color(rgb[0], rgb[1], rgb[2], alpha);
}
