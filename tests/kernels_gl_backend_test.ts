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

/** Where Deno reads the wgpu backend to use from. */
const GL = { DENO_WEBGPU_BACKEND: "gl" };
const ROOT = new URL("..", import.meta.url).pathname;
const MODULES = ["tests/kernels_batchnorm_test.ts"];
/** The child's permissions: what the batch-norm tests read (sources, the backend variable). */
const PERMISSIONS = ["--allow-read", "--allow-env=DENO_WEBGPU_BACKEND,XDG_RUNTIME_DIR"];

/** Output of `deno args...` (from PATH, which the test permissions name), with `env` added. */
async function deno(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command("deno", {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** Whether Deno's WebGPU offers an adapter through wgpu's OpenGL backend here. */
const glAdapter = (await deno([
  "eval",
  "console.log((await navigator.gpu?.requestAdapter()) ? 'adapter' : 'none')",
], GL)).text.includes("adapter");

Deno.test({
  name: "the batch-norm kernel tests pass on wgpu's OpenGL backend too (Deno's WebGPU where no " +
    "Vulkan driver is installed)",
  ignore: !glAdapter,
  async fn() {
    const { code, text } = await deno(
      ["run", "--no-check", ...PERMISSIONS, "tests/support/main_thread_tests.ts", ...MODULES],
      GL,
    );
    const summary = text.match(/^(ok|FAILED) \| (\d+) passed \| (\d+) failed.*$/m);
    assert.ok(summary, `no test summary:\n${text.slice(-3000)}`);
    assert.equal(code, 0, text.slice(-3000));
    assert.ok(Number(summary[2]) >= 7, `ran on OpenGL: ${summary[0]}`);
    assert.doesNotMatch(summary[0], /ignored/, "the kernel tests must run, not skip");
  },
});

Deno.test("the main-thread runner the OpenGL child uses reports each test and exits 1 on a failure", async () => {
  const dir = `${ROOT}.test-tmp`;
  await Deno.mkdir(dir, { recursive: true });
  const module = await Deno.makeTempFile({ dir, prefix: "main_thread_cases_", suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      module,
      [
        'Deno.test("passes", () => {});',
        'Deno.test("fails", () => { throw new Error("expected failure"); });',
        'Deno.test({ name: "skipped", ignore: true, fn() { throw new Error("ran"); } });',
        'Deno.test("with options", { sanitizeOps: false }, async () => {});',
        'Deno.test.ignore("ignored too", () => { throw new Error("ran"); });',
      ].join("\n"),
    );
    const run = ["run", "--no-check", "--allow-read", "tests/support/main_thread_tests.ts"];
    const { code, text } = await deno([...run, module]);
    assert.equal(code, 1, text);
    assert.match(text, /^fails \.\.\. FAILED/m);
    assert.match(text, /expected failure/);
    assert.match(text, /^FAILED \| 2 passed \| 1 failed \| 2 ignored/m);
    await Deno.writeTextFile(module, 'Deno.test("passes", () => {});');
    const passing = await deno([...run, module]);
    assert.equal(passing.code, 0, passing.text);
    assert.match(passing.text, /^ok \| 1 passed \| 0 failed \(/m);
  } finally {
    await Deno.remove(module);
  }
});
