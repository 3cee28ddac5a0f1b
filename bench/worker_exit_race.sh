#!/usr/bin/env bash
# A second exit race, found while proving issue 22's fix: a process whose WebGPU workers are
# terminated just before it exits. Each worker's wgpu instance is torn down on the worker's own
# thread as the main thread runs exit(); two failures follow, both upstream (Deno does not wait for
# terminated workers' threads before exit; the libraries unload or free per-thread state then):
# - with all wgpu backends: libEGL's per-thread state freed twice (issue 22's race, see
#   egl_exit_race.sh): `free(): invalid pointer`, SIGABRT;
# - with DENO_WEBGPU_BACKEND=vulkan too: SIGSEGV in glibc's __run_exit_handlers, calling an exit
#   handler whose library is no longer mapped (core dump: libvulkan.so.1 and Mesa's
#   libvulkan_lvp.so already unloaded by the worker's vkDestroyInstance; Debian 12, Mesa 22.3.6,
#   Deno 2.9.6). Rare: 2 of 40, 2 of 60, then 0 of 30 processes (16 workers, 20 ms between
#   terminate and exit, MALLOC_CHECK_=3); with all backends 4 of 40, then 1 of 30.
# The toolkit's processes do not do this: the one worker they start (backend/backend.ts
# vulkanWhereItWorks) ends at start-up, seconds before any exit, and `deno run` tasks keep WebGPU
# on the main thread. Keep it that way: let workers that used WebGPU end well before the process.
#
# Usage: bash bench/worker_exit_race.sh [processes per case, default 30] [workers, default 16]
set -u
. "$(dirname "$0")/exit_race_count.sh"
n=${1:-30}
workers=${2:-16}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo '{}' >"$dir/deno.json"
cat >"$dir/race.ts" <<'TS'
// Workers that each take an adapter, a device and one mapped buffer, then are terminated
// DELAY ms before the process exits.
const [count, delay] = Deno.args.map(Number);
const code = `const adapter = await navigator.gpu.requestAdapter();
const device = await adapter.requestDevice();
const usage = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
const buffer = device.createBuffer({ size: 16, usage });
await buffer.mapAsync(GPUMapMode.READ);
buffer.unmap();
postMessage(true);`;
const url = "data:application/javascript," + encodeURIComponent(code);
const started: Worker[] = [];
await Promise.all(Array.from({ length: count }, () =>
  new Promise<void>((ready) => {
    const worker = new Worker(url, { type: "module" });
    started.push(worker);
    worker.onmessage = () => ready();
  })));
for (const worker of started) worker.terminate();
await new Promise((wait) => setTimeout(wait, delay));
Deno.exit(0);
TS
for mode in all vulkan; do
  backend_mode "$mode"
  for delay in 5 20; do
    count_failures "$mode backends, ${delay} ms" "$n" "$dir" deno run --allow-all race.ts "$workers" "$delay"
  done
done
