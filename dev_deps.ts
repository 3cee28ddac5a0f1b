/**
 * Dependencies of the tests only, pinned with full `npm:` specifiers like `deps.ts`; `mod.ts`
 * never imports them.
 *
 * @module
 */
// ONNX Runtime (WebAssembly build, which runs in Deno with --allow-read), to run exported models.
export * as ort from "npm:onnxruntime-web@1.30.0";
// A browser driver (Chrome DevTools Protocol) for the system's chromium-headless-shell.
export { default as puppeteer } from "npm:puppeteer-core@25.16.0";
