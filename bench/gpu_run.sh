#!/usr/bin/env bash
# One call on an offline Linux NVIDIA machine: our WebGPU bench (bench.ts, bundled) and the
# PyTorch bench (bench/torch_bench.py) on the same GPU, same models and batch sizes, side by side.
# Needs bench/out/ from bench/prepare_gpu.sh (deno.xz, app.js, debs/); follows
# ../shared/notes/gpu-box.md: unpacks Deno, installs the Vulkan loader from the .deb files when
# the box has none, points the loader at NVIDIA's ICD files when no adapter is found.
#
# usage: bash bench/gpu_run.sh
# env:   DENO_STEPS (10), DENO_WARMUP (2), DENO_TIMEOUT (s per bench call, 240),
#        TORCH_STEPS (50), TORCH_TIMEOUT (s per call, 180), PYTHON (python3),
#        GPU_RUN_DIR (/tmp/regnet-gpu-run),
#        OUT (folder for gpu_run.jsonl and gpu_run.log; GPU_RUN_DIR when unset),
#        RESNET_BATCHES (64,512), REGNET_BATCHES (64), REGNET_SIZE (224),
#        ALLOW_FALLBACK=1 (run the Deno bench on a software adapter too: for a dry run),
#        GPU_TESTS (1: also run the bundled GPU tests, tests/gpu_suite.ts), GPU_TESTS_TIMEOUT (240)
# Output: the JSON lines of both benches, then a table (also saved to $OUT/gpu_run.jsonl), then
# the last lines of the GPU tests.
set -uo pipefail
cd "$(dirname "$0")/.."
src=bench/out
work=${GPU_RUN_DIR:-/tmp/regnet-gpu-run}
res_dir=${OUT:-$work}
mkdir -p "$work" "$res_dir"
results=$res_dir/gpu_run.jsonl
log=$res_dir/gpu_run.log
: >"$results"
: >"$log"
say() { echo "gpu_run: $*" | tee -a "$log" >&2; }
# Whether the linker cache lists a library (no `grep -q`: with pipefail, its early exit would
# turn ldconfig's SIGPIPE into a false "missing").
has_lib() { ldconfig -p 2>/dev/null | grep -F "$1" >/dev/null; }

for f in "$src/deno.xz" "$src/app.js"; do
  [[ -s $f ]] || {
    say "missing $f: run bash bench/prepare_gpu.sh first (and carry bench/out)"
    exit 1
  }
done

# --- Deno -------------------------------------------------------------------------------------
deno=$work/deno
if [[ ! -x $deno || $src/deno.xz -nt $deno ]]; then
  xz -dc "$src/deno.xz" >"$deno.partial" && chmod +x "$deno.partial" && mv "$deno.partial" "$deno"
fi
export DENO_DIR=$work/deno-dir DENO_NO_UPDATE_CHECK=1
say "$("$deno" --version | head -1)"

# --- Vulkan loader ------------------------------------------------------------------------------
if ! has_lib libvulkan.so.1; then
  debs=("$src"/debs/*.deb)
  if [[ $(id -u) == 0 && -e ${debs[0]} ]]; then
    say "no libvulkan.so.1: installing ${#debs[@]} .deb files from $src/debs"
    for f in "${debs[@]}"; do dpkg -x "$f" /; done
    ldconfig
  elif [[ -e ${debs[0]} ]]; then
    say "no libvulkan.so.1 and not root: unpacking the .deb files under $work/sysroot"
    for f in "${debs[@]}"; do dpkg -x "$f" "$work/sysroot"; done
    export LD_LIBRARY_PATH=$work/sysroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  else
    say "no libvulkan.so.1 and no .deb files in $src/debs"
  fi
fi

# --- Adapter ------------------------------------------------------------------------------------
probe() {
  "$deno" eval 'const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
    const i = a?.info; console.log(!a ? "none" : i.isFallbackAdapter ? "fallback " + i.description
      : i.description || i.device || i.vendor || "adapter");' 2>>"$log" | tail -1
}
find_file() { # first file named $1 under the usual driver folders
  find /usr/local/nvidia /usr/share /etc /usr/lib /usr/lib64 -maxdepth 5 -name "$1" 2>/dev/null |
    head -1
}
adapter=$(probe)
if [[ -z $adapter || $adapter == none || $adapter == fallback* ]]; then
  say "no hardware adapter (${adapter:-probe failed}); pointing the loader at NVIDIA's ICD files"
  icd=$(find_file nvidia_icd.json)
  egl=$(find_file 10_nvidia.json)
  if [[ -z $icd ]] && has_lib libGLX_nvidia.so.0; then
    icd=$work/nvidia_icd.json # the driver's library is there, its manifest is not
    echo '{"file_format_version":"1.0.0","ICD":{"library_path":"libGLX_nvidia.so.0","api_version":"1.3"}}' >"$icd"
  fi
  if [[ -z $egl ]] && has_lib libEGL_nvidia.so.0; then
    egl=$work/10_nvidia.json
    echo '{"file_format_version":"1.0.0","ICD":{"library_path":"libEGL_nvidia.so.0"}}' >"$egl"
  fi
  [[ -n $icd ]] && export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
  [[ -n $egl ]] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
  say "VK_DRIVER_FILES=${icd:-none} __EGL_VENDOR_LIBRARY_FILENAMES=${egl:-none}"
  adapter=$(probe)
fi
say "WebGPU adapter: ${adapter:-probe failed}"
have_gpu=1
if [[ -z $adapter || $adapter == none || ($adapter == fallback* && ${ALLOW_FALLBACK:-0} != 1) ]]; then
  have_gpu=0
  say "still no hardware adapter: skipping the Deno bench. Diagnostics:"
  { nvidia-smi -L; ldconfig -p | grep -iE 'vulkan|nvidia|libEGL' | head -20; } 2>&1 | tee -a "$log" >&2
fi

# --- Benches ------------------------------------------------------------------------------------
run() { # timeout, then the command; JSON lines go to the results, the rest to the log
  local limit=$1
  shift
  say "run: $*"
  timeout "$limit" "$@" 2>>"$log" | tee -a "$results" | grep '^{' || say "exit $? from: $*"
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader 2>&1 | tee -a "$log" >&2

rb=${RESNET_BATCHES:-64,512}
gb=${REGNET_BATCHES:-64}
gs=${REGNET_SIZE:-224}
ts=${TORCH_STEPS:-50}
tt=${TORCH_TIMEOUT:-180}
py=${PYTHON:-python3}
if "$py" -c 'import torch, torchvision, numpy' 2>>"$log"; then
  run "$tt" "$py" bench/torch_bench.py --model resnet20 --batch "$rb" --steps "$ts"
  run "$tt" "$py" bench/torch_bench.py --model regnet400mf --batch "$gb" --input-size "$gs" \
    --steps "$ts"
else
  say "$py lacks torch, torchvision or numpy: no PyTorch figures"
fi

if [[ $have_gpu == 1 ]]; then
  ds=${DENO_STEPS:-10}
  dw=${DENO_WARMUP:-2}
  dt=${DENO_TIMEOUT:-240}
  bench=("$deno" run --allow-read=. "$src/app.js" --json --steps "$ds" --warmup "$dw")
  run "$dt" "${bench[@]}" --model resnet20 --batch "$rb"
  run "$dt" "${bench[@]}" --model regnet400mf --batch "$gb" --input-size "$gs"
  # The same without the captured-step replay: how much of the step is tfjs's host work.
  run "$dt" "${bench[@]}" --model resnet20 --batch "$rb" --eager
fi

# --- Side by side -------------------------------------------------------------------------------
"$py" - "$results" <<'EOF' || cat "$results"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
torch = {(r["model"], r["batch"]): r for r in rows if r["backend"].startswith("torch")}
print(f"{'model':<14}{'batch':>6}  {'backend':<13}{'train img/s':>12}{'infer img/s':>13}"
      f"{'disp/step':>10}{'GPU MiB':>9}{'host ms':>9}{'train vs torch':>16}  adapter")
for r in rows:
    t = torch.get((r["model"], r["batch"]))
    ratio = "" if r["backend"].startswith("torch") or not t else \
        f"{r['train_img_per_s'] / t['train_img_per_s']:.3f}x"
    disp = "" if r["dispatches_per_step"] is None else f"{r['dispatches_per_step']:.0f}"
    mib = "" if r["gpu_bytes"] is None else f"{r['gpu_bytes'] / 2**20:.0f}"
    host = "" if r.get("host_ms_per_step") is None else f"{r['host_ms_per_step']:.2f}"
    print(f"{r['model']:<14}{r['batch']:>6}  {r['backend']:<13}{r['train_img_per_s']:>12.1f}"
          f"{r['infer_img_per_s']:>13.1f}{disp:>10}{mib:>9}{host:>9}{ratio:>16}  {r['adapter']}")
EOF

# --- Tests on this GPU ----------------------------------------------------------------------------
# PyTorch parity of every model on the GPU's kernels, the fast convolutions against tfjs's, and
# replayed steps against eager ones (tests/gpu_suite.ts, bundled by prepare_gpu.sh).
if [[ $have_gpu == 1 && ${GPU_TESTS:-1} == 1 && -s $src/gpu_tests.js ]]; then
  say "run: deno test $src/gpu_tests.js"
  timeout "${GPU_TESTS_TIMEOUT:-240}" "$deno" test --allow-read=. "$src/gpu_tests.js" \
    >"$work/gpu_tests.out" 2>&1
  say "GPU tests: exit $?"
  grep -v XDG_RUNTIME_DIR "$work/gpu_tests.out" | tee -a "$log" | tail -n 40 >&2
fi
say "results: $results, log: $log"
[[ $have_gpu == 1 ]]
