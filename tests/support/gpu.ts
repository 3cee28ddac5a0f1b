/**
 * Helpers shared by the kernel tests: whether a WebGPU adapter exists, the error of a result
 * relative to its reference, the uncaptured GPU errors of the backend's device, and a GPU made
 * to lag behind the host.
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

/**
 * Makes the GPU lag far behind the host: until the returned function is called, every
 * `queue.submit` of the webgpu backend ends with a slow compute pass (`loops` dependent `sin`s
 * in each of `groups * 64` invocations), which all later work waits for. The host then records,
 * frees and reuses buffers well ahead of the GPU, as on a loaded machine, so a result that
 * depends on timing (a buffer reused or written while a submitted command still reads it, a
 * read that does not wait for the GPU) shows up.
 *
 * @param loops iterations per invocation of the slow pass
 * @param groups workgroups of 64 of the slow pass
 * @returns a function that removes the lag
 */
export function lagSubmits(loops = 1500, groups = 32): () => void {
  type Be = {
    device: GPUDevice;
    commandEncoder: GPUCommandEncoder | null;
    submitQueue(): void;
    ensureCommandEncoderReady(): void;
    endComputePassEncoder(): void;
  };
  const be = tf.backend() as unknown as Be;
  const { device } = be;
  const code = `@group(0) @binding(0) var<storage, read_write> big : array<f32>;
    @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g : vec3<u32>) {
      var acc = big[g.x];
      for (var k = 0u; k < ${loops}u; k = k + 1u) { acc = sin(acc) + f32(k); }
      big[g.x] = acc;
    }`;
  const module = device.createShaderModule({ code });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const big = device.createBuffer({ size: groups * 64 * 4, usage: GPUBufferUsage.STORAGE });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: big } }],
  });
  const own = Object.getOwnPropertyDescriptor(be, "submitQueue");
  const submit = be.submitQueue;
  be.submitQueue = function (this: Be) {
    this.endComputePassEncoder();
    this.ensureCommandEncoderReady();
    const pass = this.commandEncoder!.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(groups);
    pass.end();
    submit.call(this);
  };
  return () => {
    if (own) Object.defineProperty(be, "submitQueue", own);
    else delete (be as Partial<Be>).submitQueue;
    big.destroy();
  };
}
