/**
 * The browser-safe third-party dependencies of the toolkit (pure JavaScript, nothing of Deno or
 * Node.js at load), pinned with full `npm:` specifiers so that `mod.ts` and `web/mod.ts` work
 * when imported by URL from a project that has no `deno.json` of ours. What reads and writes
 * files, archives, images and pictures is in `deno_deps.ts`.
 *
 * @module
 */
export * as tf from "npm:@tensorflow/tfjs@4.22.0";
export { WebGPUBackend } from "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
// PyTorch checkpoints (.pth): the zip container and the pickle stream inside it.
export { type Unzipped, unzipSync, zipSync } from "npm:fflate@0.8.3";
export { Parser as PickleParser } from "npm:pickleparser@0.2.1";
