/**
 * Every third-party dependency of the toolkit, pinned with full `npm:` specifiers so that
 * `mod.ts` works when imported by URL from a project that has no `deno.json` of ours.
 *
 * @module
 */
export * as tf from "npm:@tensorflow/tfjs@4.22.0";
export { WebGPUBackend } from "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";

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
// PyTorch checkpoints (.pth): the zip container and the pickle stream inside it.
export { type Unzipped, unzipSync, zipSync } from "npm:fflate@0.8.3";
export { Parser as PickleParser } from "npm:pickleparser@0.2.1";
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
