/**
 * Every third-party dependency of the toolkit, pinned with full `npm:` specifiers so that
 * `mod.ts` works when imported by URL from a project that has no `deno.json` of ours.
 *
 * @module
 */
export * as tf from "npm:@tensorflow/tfjs@4.22.0";
export { WebGPUBackend } from "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
