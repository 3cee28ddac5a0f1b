import assert from "node:assert/strict";
import {
  initBackend,
  probeAdapter,
  STORAGE_BINDINGS_WANTED,
  SYNC_READ_MESSAGE,
} from "../backend/backend.ts";
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

Deno.test({
  name: "dataSync on a GPU tensor is a clear error on Deno's WebGPU; data() and CPU values work",
  ignore: (await probeAdapter()) === null,
  async fn() {
    await initBackend({ log: null });
    assert.equal(tf.getBackend(), "webgpu");
    const onGpu = tf.tidy(() => tf.tensor1d([1, 2, 3]).square());
    assert.throws(() => onGpu.dataSync(), (e: Error) => e.message === SYNC_READ_MESSAGE);
    assert.throws(() => onGpu.arraySync(), (e: Error) => e.message === SYNC_READ_MESSAGE);
    assert.deepEqual(Array.from(await onGpu.data()), [1, 4, 9]);
    assert.deepEqual(Array.from(onGpu.dataSync()), [1, 4, 9], "after a read, the CPU copy");
    const onCpu = tf.tensor1d([5, 6]);
    assert.deepEqual(Array.from(onCpu.dataSync()), [5, 6], "never uploaded");
    tf.dispose([onGpu, onCpu]);
  },
});

Deno.test("starting the backend prints no error line when XDG_RUNTIME_DIR is unset, nor tfjs's advice", async () => {
  const script = new URL("./support/quiet_backend.ts", import.meta.url).pathname;
  // An empty XDG_RUNTIME_DIR is what libwayland calls invalid, as it does an unset one.
  const run = (xdg: string) =>
    new Deno.Command("deno", {
      args: ["run", "--no-prompt", "--allow-read", "--allow-env=XDG_RUNTIME_DIR", script],
      env: { XDG_RUNTIME_DIR: xdg },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  const [unset, session] = await Promise.all([run(""), run("/tmp/a-session")]);
  const dec = new TextDecoder();
  for (const [what, r] of [["unset", unset], ["session", session]] as const) {
    const [stdout, stderr] = [dec.decode(r.stdout), dec.decode(r.stderr)];
    assert.equal(r.code, 0, `${what}: ${stderr}`);
    assert.match(stdout, /^backend: /m);
    assert.match(stdout, /^backend (webgpu|cpu): 1,4,9$/m);
    assert.doesNotMatch(stderr, /error/i, `${what}: stderr has an error line:\n${stderr}`);
    assert.match(stdout, /^then cpu: 4,5$/m);
    // tfjs's cpu backend advises tfjs-node on its first write when it sees Node.js APIs.
    assert.doesNotMatch(stdout + stderr, /TensorFlow\.js in Node\.js/, `${what}: tfjs's advice`);
  }
  // A session's own runtime folder is kept.
  assert.match(dec.decode(session.stdout), /^XDG_RUNTIME_DIR=\/tmp\/a-session$/m);
});

Deno.test({
  name: "the adapter probe keeps wgpu off OpenGL (EGL) where Vulkan works, and only there",
  ignore: Deno.build.os !== "linux" || (await probeAdapter()) === null,
  async fn() {
    const script = new URL("./support/wgpu_backends.ts", import.meta.url).pathname;
    const run = async (env: Record<string, string>) => {
      const out = await new Deno.Command("deno", {
        // Deno lets only a process with every permission read /proc/self/maps, where the probe
        // sees which libraries are loaded; the probe script does nothing else.
        args: ["run", "--no-prompt", "--allow-all", script],
        // Empty (as unset) in the child unless given: the parent may have set it already.
        env: { DENO_WEBGPU_BACKEND: "", ...env },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return JSON.parse(text.trim().split("\n").at(-1)!) as {
        adapter: string | null;
        variable: string | null;
        egl: boolean;
      };
    };
    // Whether Vulkan alone gives an adapter here, asked independently of the probe.
    const vulkanWorks = (await run({ DENO_WEBGPU_BACKEND: "vulkan" })).adapter !== null;
    const auto = await run({});
    if (vulkanWorks) {
      // The process runs on Vulkan alone, and libEGL is never loaded.
      assert.equal(auto.variable, "vulkan");
      assert.ok(auto.adapter, "an adapter through Vulkan");
      assert.equal(auto.egl, false, "libEGL loaded though Vulkan works");
      // Vulkan hidden (as on a machine with Mesa's OpenGL driver only): all backends stay.
      const glOnly = await run({ VK_ICD_FILENAMES: "/nonexistent.json" });
      assert.equal(glOnly.variable, null);
    } else {
      // No Vulkan driver here (OpenGL only): nothing was forced.
      assert.equal(auto.variable, null);
    }
    // A choice of the user's is kept.
    const chosen = await run({ DENO_WEBGPU_BACKEND: "gl" });
    assert.equal(chosen.variable, "gl");
  },
});
