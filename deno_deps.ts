/**
 * The Deno-side (file, data and picture) third-party dependencies, pinned with full `npm:`
 * specifiers like `deps.ts`: image codecs, the CIFAR archive reader (tar-stream needs
 * `node:events` at load), ONNX's protobuf messages, and Skia's CanvasKit with its font. The
 * browser entry `web/mod.ts` never imports this module.
 *
 * @module
 */
// Image codecs (data pipeline).
export { default as jpeg } from "npm:jpeg-js@0.4.4";
export {
  convertIndexedToRgb,
  decode as decodePng,
  type DecodedPng,
  encode as encodePng,
} from "npm:fast-png@8.0.0";
// Archive reading (CIFAR download).
export { default as tarStream } from "npm:tar-stream@3.2.2";
// ONNX export: the ONNX protobuf messages (onnx 1.10.2's onnx.proto compiled by protobufjs). The
// package is CommonJS; its exports object `{ onnx }` is the default export.
export { default as onnxProto } from "npm:onnx-proto@8.0.1";
// Drawing (report pictures): Skia's CanvasKit in WebAssembly, and the DejaVu Sans font.
export { default as canvaskit } from "npm:canvaskit-wasm@0.42.0";
export type { Canvas, CanvasKit, Font, Paint, Typeface } from "npm:canvaskit-wasm@0.42.0";
export { default as dejavuFontsPackage } from "npm:dejavu-fonts-ttf@2.37.3/package.json" with {
  type: "json",
};
/** The `file:` URL of DejaVuSans.ttf in the npm cache. */
export const DEJAVU_SANS_URL: string = import.meta.resolve(
  "npm:dejavu-fonts-ttf@2.37.3/ttf/DejaVuSans.ttf",
);
