/**
 * The batch-norm kernel tests on wgpu's OpenGL backend. Deno's WebGPU runs there on a machine
 * without a Vulkan driver: a fresh Debian install has Mesa's OpenGL llvmpipe (EGL, `swrast`) but
 * not its Vulkan driver (lavapipe, `mesa-vulkan-drivers`), and Deno then picks the OpenGL one
 * without a word (the adapter has the same name). Mesa's OpenGL shader compiler contracts
 * multiply-adds where lavapipe does not, so results that cross two shaders may differ by an ulp:
 * the batch-norm tests once assumed they could not, and failed for new users there.
 *
 * The child runs the tests with `deno run` through `tests/support/main_thread_tests.ts`, not with
 * `deno test`: on OpenGL, a `deno test` process can abort at exit after every test passed (libEGL's
 * per-thread state freed twice, issue 22), and under `deno run` all EGL calls stay on the main
 * thread, where that race cannot happen.
 *
 * @module
 */
import assert from "node:assert/strict";

/** Where Deno reads the wgpu backend to use from; `NO_COLOR` keeps the output plain text. */
const GL = { DENO_WEBGPU_BACKEND: "gl", NO_COLOR: "1" };
const ROOT = new URL("..", import.meta.url).pathname;
const MODULES = ["tests/kernels_batchnorm_test.ts"];
/** The child's permissions: what the batch-norm tests read (sources, the backend variable). */
const PERMISSIONS = ["--allow-read", "--allow-env=DENO_WEBGPU_BACKEND,XDG_RUNTIME_DIR"];

/** Output of `deno args...` (from PATH, which the test permissions name) on the OpenGL backend. */
async function denoOnGl(args: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command("deno", {
    args,
    cwd: ROOT,
    env: GL,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** Whether Deno's WebGPU offers an adapter through wgpu's OpenGL backend here. */
const glAdapter = (await denoOnGl([
  "eval",
  "console.log((await navigator.gpu?.requestAdapter()) ? 'adapter' : 'none')",
])).text.includes("adapter");

Deno.test({
  name: "the batch-norm kernel tests pass on wgpu's OpenGL backend too (Deno's WebGPU where no " +
    "Vulkan driver is installed)",
  ignore: !glAdapter,
  async fn() {
    const { code, text } = await denoOnGl([
      "run",
      "--no-check",
      ...PERMISSIONS,
      "tests/support/main_thread_tests.ts",
      ...MODULES,
    ]);
    const summary = text.match(/^(ok|FAILED) \| (\d+) passed \| (\d+) failed.*$/m);
    assert.ok(summary, `no test summary:\n${text.slice(-3000)}`);
    assert.equal(code, 0, text.slice(-3000));
    assert.ok(Number(summary[2]) >= 7, `ran on OpenGL: ${summary[0]}`);
    assert.doesNotMatch(summary[0], /ignored/, "the kernel tests must run, not skip");
  },
});
