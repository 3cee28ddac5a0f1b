# Sourced by the exit-race reproductions (egl_exit_race.sh, worker_exit_race.sh).
#
# count_failures LABEL N DIR COMMAND...: runs COMMAND N times in DIR (output in DIR/out.log),
# prints each run that did not exit 0 with its first glibc heap message, then
# "LABEL: F of N processes did not exit 0". Set DENO_WEBGPU_BACKEND (or unset it) before.
count_failures() {
  local label=$1 n=$2 dir=$3
  shift 3
  local failed=0 k rc
  for k in $(seq 1 "$n"); do
    (cd "$dir" && XDG_RUNTIME_DIR=/dev/null "$@" >"$dir/out.log" 2>&1)
    rc=$?
    if [ "$rc" != 0 ]; then
      failed=$((failed + 1))
      echo "  $label, process $k: exit $rc $(grep -aE 'free\(\)|corrupted|malloc|fastbin|double free' "$dir/out.log" | head -1)"
    fi
  done
  echo "$label: $failed of $n processes did not exit 0"
}

# backend_mode MODE: "vulkan" sets DENO_WEBGPU_BACKEND=vulkan, "all" unsets it (Deno's default).
backend_mode() {
  if [ "$1" = vulkan ]; then export DENO_WEBGPU_BACKEND=vulkan; else unset DENO_WEBGPU_BACKEND; fi
}
