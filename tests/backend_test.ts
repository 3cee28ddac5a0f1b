import assert from "node:assert/strict";
import { initBackend, probeAdapter } from "../backend/backend.ts";
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
  if (probe) assert.match(lines[0], new RegExp(`webgpu on "${probe.name.replace(/[()]/g, ".")}"`));
  await initBackend({ backend: "cpu", log: null });
});

Deno.test("initBackend: an unknown backend is a one-line error listing the valid ones", async () => {
  await assert.rejects(
    () => initBackend({ backend: "webgl" as "cpu", log: null }),
    /--backend: unknown backend "webgl"; valid: webgpu, cpu/,
  );
});
