import assert from "node:assert/strict";
import { tf, type WebGPUBackend } from "../deps.ts";
import { initBackend } from "../backend/backend.ts";
import { capture } from "../webgpu/runtime/capture.ts";
import { copyTensor, forgetCpuCopy } from "../webgpu/runtime/direct.ts";
import { bufferOf, internals } from "../webgpu/runtime/tfjs.ts";
import { installDispatchCache, uninstallDispatchCache } from "../webgpu/runtime/dispatch_cache.ts";
import { hasAdapter } from "./support/gpu.ts";

Deno.test({
  name: "capture: replays the recorded kernels over the same buffers; refuses foreign buffers",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const backend = tf.backend() as WebGPUBackend;
    const a = tf.tensor1d([1, 2, 3, 4, 5]);
    // On the GPU before the capture (a tensor still on the CPU would be uploaded during the
    // capture into a buffer the recording then owns: a constant of the recording).
    const b = tf.tensor1d([10, 20, 30, 40, 50]);
    bufferOf(internals(backend), b);
    bufferOf(internals(backend), a);
    await a.data(); // a CPU copy tfjs keeps

    // `b` is neither state nor made inside: the recording would depend on its buffer.
    const refused = capture(backend, () => tf.tidy(() => a.mul(2).add(b)), [a]);
    assert.equal(refused.recording, null);
    assert.match(refused.reason!, /from before the capture that is not state/);
    refused.result.dispose();

    const { result: y, recording, reason } = capture(
      backend,
      () => tf.tidy(() => a.mul(2).add(b).relu()),
      [a, b],
    );
    assert.equal(reason, null);
    assert.ok(recording !== null);
    assert.equal(recording.dispatches, 3, "mul, add, relu");
    assert.deepEqual([...await y.data()], [12, 24, 36, 48, 60]);

    // New values in a's buffer, then a replay: the same kernels read them.
    const next = tf.tensor1d([-1, -2, -3, 4, 5]);
    copyTensor(backend, next, a);
    recording.replay();
    forgetCpuCopy(backend, y);
    assert.deepEqual([...await y.data()], [8, 16, 24, 48, 60]);
    assert.deepEqual([...await a.data()], [-1, -2, -3, 4, 5], "the copy dropped a's CPU copy");

    // The intermediate `a * 2` went back to the recording, not to tfjs's pool: other work
    // cannot take its buffer, so a second replay still gives the right answer.
    const other = tf.tidy(() => tf.ones([5]).mul(7));
    recording.replay();
    forgetCpuCopy(backend, y);
    assert.deepEqual([...await y.data()], [8, 16, 24, 48, 60]);
    assert.deepEqual([...await other.data()], [7, 7, 7, 7, 7]);

    // It owns the buffers of `a * 2`, `... + b`, y and the scalar 2 (uploaded during the
    // capture: a constant of the recording); disposing it gives them back to tfjs.
    assert.equal(recording.bytes, 3 * 20 + 4);
    const free = () =>
      (backend as unknown as { bufferManager: { numFreeBuffers: number } })
        .bufferManager.numFreeBuffers;
    const freeBefore = free();
    y.dispose();
    recording.dispose();
    assert.equal(recording.bytes, 0);
    assert.equal(free(), freeBefore + 4, "the four buffers are back in tfjs's pool");
    tf.dispose([a, b, next, other]);
  },
});

Deno.test({
  name: "capture: no recording without the dispatch patch (tfjs's stock path is not recorded)",
  ignore: !hasAdapter,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await initBackend({ log: null });
    const backend = tf.backend() as WebGPUBackend;
    const a = tf.tensor1d([1, 2, 3]);
    uninstallDispatchCache();
    try {
      const { result, recording, reason } = capture(backend, () => a.mul(3), [a]);
      assert.equal(recording, null);
      assert.match(reason!, /dispatch patch/);
      assert.deepEqual([...await result.data()], [3, 6, 9], "the work still ran");
      result.dispose();
    } finally {
      installDispatchCache();
      a.dispose();
    }
  },
});
