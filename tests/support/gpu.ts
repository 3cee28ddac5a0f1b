/**
 * Helpers shared by the kernel tests: whether a WebGPU adapter exists, the error of a result
 * relative to its reference, and the uncaptured GPU errors of the backend's device.
 *
 * @module
 */
import assert from "node:assert/strict";
import { tf } from "../../deps.ts";
import { probeAdapter } from "../../backend/backend.ts";

/** Whether Deno offers a WebGPU adapter (hardware or software); tests that need one skip otherwise. */
export const hasAdapter: boolean = (await probeAdapter()) !== null;

/**
 * Max |a - b| over max |b| (or over `floor` when larger): the error relative to the reference's
 * scale.
 *
 * @param a the result
 * @param b the reference
 * @param floor a lower bound of the scale (for results that cancel to near zero)
 * @returns the relative error
 */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  assert.equal(a.length, b.length);
  let diff = 0, scale = floor;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, 1e-30);
}

/**
 * Starts collecting the uncaptured errors of the webgpu backend's device (shader compilation,
 * validation); the returned array fills as they happen.
 *
 * @returns the live list of error messages
 */
export function gpuErrors(): string[] {
  const errors: string[] = [];
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;
  device.addEventListener("uncapturederror", (e) => {
    errors.push((e as GPUUncapturedErrorEvent).error.message);
  });
  return errors;
}
