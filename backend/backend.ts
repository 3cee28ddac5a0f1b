/**
 * Backend bootstrap: picks tfjs's `webgpu` backend on Deno's built-in `navigator.gpu`, reports
 * the adapter it got in one line, and uses tfjs's `cpu` backend instead, saying so, where there is none.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import { installWebGpu, unregisterFastKernels } from "../webgpu/install.ts";
import {
  explainSyncReads,
  quietCpuBackend,
  registerWebGpuFactory,
} from "../webgpu/runtime/tfjs.ts";

/** The tfjs backends the toolkit runs on. */
export const BACKEND_NAMES = ["webgpu", "cpu"] as const;
/** A backend name: `webgpu` (default) or `cpu`. */
export type BackendName = typeof BACKEND_NAMES[number];

/** What {@link initBackend} set up. */
export interface BackendInfo {
  /** The tfjs backend in use. */
  backend: BackendName;
  /** The adapter's description (`"NVIDIA H200"`, `"llvmpipe (...)"`), or `"cpu"`. */
  adapter: string;
  /** True when the WebGPU adapter is a software (fallback) adapter such as llvmpipe. */
  fallbackAdapter: boolean;
}

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /** The backend asked for; `webgpu` when absent. */
  backend?: BackendName;
  /** Where the one-line report goes; `console.error` when absent, nothing when `null`. */
  log?: ((line: string) => void) | null;
  /** Install the toolkit's WebGPU layer (`webgpu/`) on webgpu; true when absent. */
  fastKernels?: boolean;
}

/**
 * Storage buffers per dispatch the toolkit asks the device for (WebGPU's default is 8), where
 * the adapter allows: the multi-tensor kernels (`webgpu/kernels/multi_tensor.ts`) then update
 * more tensors per dispatch. A backend made earlier (by the application) is left as it is.
 */
export const STORAGE_BINDINGS_WANTED = 64;

/**
 * Where {@link quietDisplayProbe} points `XDG_RUNTIME_DIR`: a path that can hold no Wayland
 * socket (it is not a folder), so the probe fails at once, silently.
 */
export const NO_DISPLAY_RUNTIME_DIR = "/dev/null";

/**
 * Keeps adapter requests quiet on Linux without a desktop session. Mesa's implicit Vulkan layer
 * `VK_LAYER_MESA_device_select` looks for a Wayland compositor (to prefer its GPU) every time
 * Deno's WebGPU lists the Vulkan devices, and libwayland prints `error:
 * XDG_RUNTIME_DIR is invalid or not set in the environment.` to stderr when that variable is
 * unset (a server, a container, ssh), although nothing is wrong: WebGPU compute needs no
 * display. Where the variable is unset (or not an absolute path) and this process may set it
 * (`--allow-env=XDG_RUNTIME_DIR`, which the tasks give), it is set to
 * {@link NO_DISPLAY_RUNTIME_DIR} before the first adapter request. A session's own
 * `XDG_RUNTIME_DIR` is left as it is; without the permission nothing changes.
 */
export function quietDisplayProbe(): void {
  // A browser has no `Deno` (and needs no such care).
  if (typeof Deno === "undefined" || Deno.build.os !== "linux") return;
  const env = { name: "env", variable: "XDG_RUNTIME_DIR" } as const;
  if (Deno.permissions.querySync(env).state !== "granted") return;
  if (Deno.env.get("XDG_RUNTIME_DIR")?.startsWith("/")) return;
  Deno.env.set("XDG_RUNTIME_DIR", NO_DISPLAY_RUNTIME_DIR);
}

/** The variable through which Deno's WebGPU takes the wgpu backends to start. */
export const WGPU_BACKEND_VARIABLE = "DENO_WEBGPU_BACKEND";

/** A module for a throwaway worker: does a Vulkan-only wgpu instance find an adapter? */
const VULKAN_PROBE = "data:text/javascript," + encodeURIComponent(
  "const a = await navigator.gpu.requestAdapter(); postMessage(a !== null); close();",
);

/**
 * Keeps Deno's WebGPU off OpenGL where Vulkan works (Linux). When a Deno runtime first asks for
 * an adapter, wgpu starts every backend it has, OpenGL through EGL as well as Vulkan, though it
 * then hands out the Vulkan adapter. libglvnd's libEGL keeps state for each thread that called
 * EGL, and at process exit its destructor and the exiting threads free that state in a race:
 * `free(): invalid pointer` (or `corrupted size vs. prev_size in fastbins`) and SIGABRT after all
 * the work is done. Seen in about 1 of 15 processes that start 60 runtimes (a test suite starts
 * one per test file), never with Vulkan alone (`bench/egl_exit_race.sh` reproduces it; the core
 * dumps end in libEGL's destructor and in a thread's TSD cleanup).
 *
 * So, on Linux, where `DENO_WEBGPU_BACKEND` is unset (or empty) and this process may read and set it (the
 * tasks give `--allow-env=...,DENO_WEBGPU_BACKEND`), a throwaway worker asks a Vulkan-only
 * instance for an adapter; if it gets one, the variable is set to `vulkan` for the whole process
 * (later runtimes and child processes too). Where Vulkan finds none (a machine with Mesa's
 * OpenGL driver only), or the variable was set by the user, nothing changes.
 */
export async function vulkanWhereItWorks(): Promise<void> {
  if (typeof Deno === "undefined" || Deno.build.os !== "linux") return;
  const env = { name: "env", variable: WGPU_BACKEND_VARIABLE } as const;
  if (Deno.permissions.querySync(env).state !== "granted") return;
  if (Deno.env.get(WGPU_BACKEND_VARIABLE)) return;
  Deno.env.set(WGPU_BACKEND_VARIABLE, "vulkan");
  let found = false;
  try {
    const worker = new Worker(VULKAN_PROBE, { type: "module" });
    found = await new Promise<boolean>((resolve) => {
      worker.onmessage = (e) => resolve(e.data === true);
      worker.onerror = (e) => {
        e.preventDefault();
        resolve(false);
      };
    });
    worker.terminate();
  } catch {
    // No worker here (permissions, an embedder): wgpu keeps all its backends.
  }
  if (!found) Deno.env.delete(WGPU_BACKEND_VARIABLE);
}

/** The message of `dataSync()` / `arraySync()` on a GPU tensor where they cannot work. */
export const SYNC_READ_MESSAGE =
  "dataSync()/arraySync() cannot read a tensor held on the GPU with Deno's WebGPU (tfjs reads " +
  "it synchronously through a 2D canvas, which Deno does not have): use await tensor.data() " +
  "or await tensor.array()";

/** Information on the WebGPU adapter Deno offers, or `null` when there is none. */
export async function probeAdapter(): Promise<{ name: string; fallback: boolean } | null> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return null;
  quietDisplayProbe();
  await vulkanWhereItWorks();
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const name = info.description || info.device || info.vendor || "unknown adapter";
  return { name, fallback: info.isFallbackAdapter === true };
}

/**
 * True when a hardware (non-fallback) WebGPU adapter is present: tests that need a real GPU
 * use it to skip themselves.
 *
 * @returns whether a hardware adapter exists
 * @example
 * ```ts
 * import { hasHardwareGpu } from "./backend.ts";
 * console.log(typeof await hasHardwareGpu());
 * ```
 */
export async function hasHardwareGpu(): Promise<boolean> {
  const probe = await probeAdapter();
  return probe !== null && !probe.fallback;
}

/** tfjs's priority of its cpu backend (`registerBackend("cpu", ..., 1)` in tfjs-backend-cpu). */
const CPU_PRIORITY = 1;

/**
 * Every cpu backend of this process starts quiet ({@link quietCpuBackend}: no advice to install
 * tfjs-node), the one already made and the one tfjs makes later, when a test or a user switches
 * with `tf.setBackend("cpu")` after {@link initBackend}. Uses tfjs's public backend registry.
 */
function quietCpuBackends(): void {
  const made = tf.findBackend("cpu");
  if (made) return quietCpuBackend(made);
  const make = tf.findBackendFactory("cpu");
  if (make === null || quietFactories.has(make)) return;
  const quiet = () => {
    const backend = make();
    if (backend instanceof Promise) return backend.then((b) => (quietCpuBackend(b), b));
    quietCpuBackend(backend);
    return backend;
  };
  quietFactories.add(quiet);
  tf.removeBackend("cpu");
  tf.registerBackend("cpu", quiet, CPU_PRIORITY);
}
const quietFactories = new WeakSet<object>();

/**
 * Sets the tfjs backend: `webgpu` by default, tfjs's `cpu` backend (with a message) when Deno
 * offers no WebGPU adapter. Reports the choice in one line.
 *
 * @param options which backend to ask for and where to report
 * @returns the backend and adapter in use
 * @example
 * ```ts
 * import { initBackend } from "./backend.ts";
 * const info = await initBackend({ backend: "cpu", log: null });
 * console.log(info.backend); // "cpu"
 * ```
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendInfo> {
  quietCpuBackends();
  const wanted = options.backend ?? "webgpu";
  const log = options.log === undefined ? (line: string) => console.error(line) : options.log;
  if (!(BACKEND_NAMES as readonly string[]).includes(wanted)) {
    throw new Error(`--backend: unknown backend "${wanted}"; valid: ${BACKEND_NAMES.join(", ")}`);
  }
  if (wanted === "webgpu") {
    const probe = await probeAdapter();
    if (probe === null) {
      log?.("backend: no WebGPU adapter found; using tfjs's cpu backend (slow)");
    } else {
      registerWebGpuFactory(STORAGE_BINDINGS_WANTED);
      if (await tf.setBackend("webgpu")) {
        await tf.ready();
        explainSyncReads(tf.backend() as WebGPUBackend, SYNC_READ_MESSAGE);
        if (options.fastKernels ?? true) installWebGpu();
        else unregisterFastKernels();
        const kind = probe.fallback ? "software fallback adapter" : "hardware adapter";
        log?.(`backend: webgpu on "${probe.name}" (${kind})`);
        return { backend: "webgpu", adapter: probe.name, fallbackAdapter: probe.fallback };
      }
      log?.(`backend: webgpu failed to start on "${probe.name}"; using tfjs's cpu backend`);
    }
  }
  await tf.setBackend("cpu");
  await tf.ready();
  if (wanted === "cpu") log?.("backend: cpu (tfjs cpu backend)");
  return { backend: "cpu", adapter: "cpu", fallbackAdapter: false };
}
