#!/usr/bin/env bash
# Reproduces the abort at exit of issue 22: `free(): invalid pointer` (or `corrupted size vs.
# prev_size in fastbins`) and SIGABRT after every test passed, in a Deno process that starts many
# WebGPU runtimes, on Linux with Mesa (lavapipe for Vulkan, llvmpipe through EGL for OpenGL).
#
# Upstream, not ours: when a Deno runtime first asks for an adapter, Deno's WebGPU (wgpu) starts
# every backend, OpenGL through libglvnd's libEGL as well as Vulkan, though it hands out the
# Vulkan adapter. libEGL keeps state for each thread that called EGL; at exit its destructor
# (_dl_fini -> libEGL.so.1) and the exiting threads' TSD cleanup (__nptl_deallocate_tsd) free
# that state in a race. Core dumps of both kinds were taken on Debian 12 (Mesa 22.3.6, libglvnd
# 1.6.0) with Deno 2.9.6. With DENO_WEBGPU_BACKEND=vulkan (no EGL) it was never seen; the toolkit
# sets that where Vulkan works (backend/backend.ts vulkanWhereItWorks).
#
# Usage: bash bench/egl_exit_race.sh [processes per mode, default 30]
# Each process is one `deno test` of 60 small WebGPU test files (about 5 s); both modes run.
set -u
. "$(dirname "$0")/exit_race_count.sh"
n=${1:-30}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo '{}' >"$dir/deno.json"
cat >"$dir/template.ts" <<'TS'
// One test file: an adapter, a device, one small compute pass and a read back.
Deno.test("gpu", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter!.requestDevice();
  const code = `@group(0) @binding(0) var<storage, read_write> b : array<f32>;
    @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g : vec3<u32>) {
      b[g.x] = f32(g.x) * 2.0;
    }`;
  const module = device.createShaderModule({ code });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const size = 256 * 4;
  const buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: buf } }],
  }));
  pass.dispatchWorkgroups(4);
  pass.end();
  enc.copyBufferToBuffer(buf, 0, read, 0, size);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const v = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  if (v[3] !== 6) throw new Error(`wrong result ${v[3]}`);
});
TS
for i in $(seq -w 1 60); do cp "$dir/template.ts" "$dir/g${i}_test.ts"; done
for mode in all vulkan; do
  backend_mode "$mode"
  count_failures "$mode backends" "$n" "$dir" deno test --allow-all .
done
