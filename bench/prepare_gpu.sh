#!/usr/bin/env bash
# Prepares, on a machine with Deno and network, what bench/gpu_run.sh needs on an offline GPU box
# (see ../shared/notes/gpu-box.md), all under bench/out/ (git-ignored):
#   bench/out/deno.xz   this Deno binary, xz-compressed (about 31 MB)
#   bench/out/app.js    `deno bundle` of bench.ts: one file with tfjs inside (about 4 MB)
#   bench/out/gpu_tests.js, fixtures/   `deno bundle` of tests/gpu_suite.ts and its fixtures
#   bench/out/debs/     Debian's Vulkan loader and GL/EGL dispatch libraries, for boxes without them
# then runs the bundle once here as a smoke test.
#
# usage: bash bench/prepare_gpu.sh        (from anywhere; works in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out/debs"
deno_bin="$(command -v deno)"

if [[ ! -s $out/deno.xz || $deno_bin -nt $out/deno.xz ]]; then
  echo "prepare: compressing $deno_bin ($(deno --version | head -1))"
  xz -T2 -6 -c "$deno_bin" >"$out/deno.xz.partial"
  mv "$out/deno.xz.partial" "$out/deno.xz"
fi

echo "prepare: bundling bench.ts and the GPU tests (tests/gpu_suite.ts)"
deno bundle --quiet --platform deno -o "$out/app.js" bench.ts
deno bundle --quiet --platform deno -o "$out/gpu_tests.js" tests/gpu_suite.ts
# The parity test reads its fixtures next to the bundle.
mkdir -p "$out/fixtures"
cp tests/fixtures/*.json "$out/fixtures/"

if ! ls "$out"/debs/libvulkan1_*.deb >/dev/null 2>&1; then
  echo "prepare: downloading the Vulkan loader and GL dispatch .deb files"
  (cd "$out/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

echo "prepare: smoke test of the bundle here"
deno run --allow-read=. "$out/app.js" --json --batch 8 --steps 2 --warmup 1
du -sh "$out/deno.xz" "$out/app.js" "$out/debs"
echo "prepare: done; on the GPU machine run: bash bench/gpu_run.sh (carry bench/out)"
