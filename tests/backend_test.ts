import assert from "node:assert/strict";
import { initBackend, probeAdapter, STORAGE_BINDINGS_WANTED } from "../backend/backend.ts";
import { tf } from "../deps.ts";

Deno.test("initBackend: cpu on request, webgpu by default when an adapter exists", async () => {
  const cpu = await initBackend({ backend: "cpu", log: null });
  assert.equal(cpu.backend, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  const lines: string[] = [];
  const info = await initBackend({ log: (l) => lines.push(l) });
  const probe = await probeAdapter();
  assert.equal(info.backend, probe ? "webgpu" : "cpu");
  assert.equal(lines.length, 1);
  if (probe) {
    assert.match(lines[0], new RegExp(`webgpu on "${probe.name.replace(/[()]/g, ".")}"`));
    // The device has as many storage buffers per dispatch as the adapter allows, up to 64
    // (WebGPU's default is 8): the multi-tensor kernels pack more tensors per dispatch.
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    assert.equal(
      device.limits.maxStorageBuffersPerShaderStage,
      Math.min(adapter!.limits.maxStorageBuffersPerShaderStage, STORAGE_BINDINGS_WANTED),
    );
  }
  await initBackend({ backend: "cpu", log: null });
});

Deno.test("initBackend: an unknown backend is a one-line error listing the valid ones", async () => {
  await assert.rejects(
    () => initBackend({ backend: "webgl" as "cpu", log: null }),
    /--backend: unknown backend "webgl"; valid: webgpu, cpu/,
  );
});
