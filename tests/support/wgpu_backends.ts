// Run by tests/backend_test.ts as a subprocess: starts the adapter probe, then reports on stdout
// the adapter, the wgpu backend variable, and whether libEGL (wgpu's OpenGL path) is loaded.
import { probeAdapter } from "../../backend/backend.ts";

const probe = await probeAdapter();
const maps = await Deno.readTextFile("/proc/self/maps");
console.log(JSON.stringify({
  adapter: probe?.name ?? null,
  variable: Deno.env.get("DENO_WEBGPU_BACKEND") ?? null,
  egl: maps.includes("libEGL"),
}));
