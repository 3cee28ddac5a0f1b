/**
 * Dependencies of the tests only, pinned with full `npm:` specifiers like `deps.ts`; `mod.ts`
 * never imports them.
 *
 * @module
 */
// ONNX Runtime (WebAssembly build, which runs in Deno with --allow-read), to run exported models.
export * as ort from "npm:onnxruntime-web@1.30.0";
