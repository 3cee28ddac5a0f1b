/**
 * Backend start in a browser: tfjs's `webgpu` backend (with the toolkit's WebGPU layer) where
 * `navigator.gpu` gives an adapter, else tfjs's `webgl`, else `cpu`. Nothing of Deno is used.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import { installWebGpu, type KernelProfile } from "../webgpu/install.ts";
import { registerWebGpuFactory } from "../webgpu/runtime/tfjs.ts";
import { STORAGE_BINDINGS_WANTED } from "../backend/backend.ts";

/** The tfjs backends a page can run on, best first. */
export const BROWSER_BACKENDS = ["webgpu", "webgl", "cpu"] as const;
/** A browser backend name. */
export type BrowserBackendName = typeof BROWSER_BACKENDS[number];

/** What {@link startBackend} set up. */
export interface BrowserBackendInfo {
  /** The tfjs backend in use. */
  backend: BrowserBackendName;
  /** The WebGPU adapter's description, the WebGL renderer, or `"cpu"`. */
  adapter: string;
  /** True when the WebGPU adapter is a software (fallback) adapter such as SwiftShader. */
  fallbackAdapter: boolean;
  /** Why a better backend was passed over (empty when the first one asked for started). */
  notes: string[];
}

/** Options of {@link startBackend}. */
export interface StartBackendOptions {
  /** The backends to try, in order; `["webgpu", "webgl", "cpu"]` when absent. */
  backends?: readonly BrowserBackendName[];
  /**
   * The WebGPU layer's kernel tuning: `gpu` when absent, also on a fallback adapter (the `cpu`
   * tuning's unrolled shaders take minutes each to build on Chromium's SwiftShader).
   */
  profile?: "auto" | KernelProfile;
  /** Install the toolkit's WebGPU layer on webgpu; true when absent. */
  fastKernels?: boolean;
}

async function webGpuAdapter(): Promise<{ name: string; fallback: boolean } | null> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return null;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const name = [info.vendor, info.architecture, info.description || info.device]
    .filter((s) => s).join(" ") || "unknown adapter";
  const fallback = info.isFallbackAdapter === true || /swiftshader/i.test(name);
  return { name, fallback };
}

function webGlRenderer(): string {
  // WebGL's `RENDERER` parameter (0x1f01) of tfjs's context; typed loosely (no DOM types here).
  type Gl = { getParameter(p: number): unknown };
  const gl = (tf.backend() as unknown as { gpgpu?: { gl?: Gl } }).gpgpu?.gl;
  return gl ? String(gl.getParameter(0x1f01) ?? "webgl") : "webgl";
}

/**
 * Starts the best backend the browser offers: `webgpu` where `navigator.gpu` gives an adapter
 * (with the toolkit's WebGPU layer installed), else `webgl`, else `cpu`.
 *
 * @param options the backends to try and the WebGPU layer's tuning
 * @returns the backend and adapter in use, and why better ones were passed over
 * @example
 * ```ts
 * import { startBackend } from "./backend.ts";
 * const info = await startBackend({ backends: ["cpu"] });
 * console.log(info.backend); // "cpu"
 * ```
 */
export async function startBackend(
  options: StartBackendOptions = {},
): Promise<BrowserBackendInfo> {
  const notes: string[] = [];
  for (const name of options.backends ?? BROWSER_BACKENDS) {
    try {
      if (name === "webgpu") {
        const probe = await webGpuAdapter();
        if (probe === null) {
          notes.push("webgpu: no adapter (navigator.gpu absent or it gave none)");
          continue;
        }
        registerWebGpuFactory(STORAGE_BINDINGS_WANTED);
        if (!(await tf.setBackend("webgpu"))) {
          notes.push(`webgpu: the backend failed to start on "${probe.name}"`);
          continue;
        }
        await tf.ready();
        if (options.fastKernels ?? true) installWebGpu({ profile: options.profile ?? "gpu" });
        return { backend: "webgpu", adapter: probe.name, fallbackAdapter: probe.fallback, notes };
      }
      if (!(await tf.setBackend(name))) {
        notes.push(`${name}: the backend failed to start`);
        continue;
      }
      await tf.ready();
      const adapter = name === "webgl" ? webGlRenderer() : "cpu";
      return { backend: name, adapter, fallbackAdapter: false, notes };
    } catch (e) {
      notes.push(`${name}: ${(e as Error).message}`);
    }
  }
  throw new Error(`no tfjs backend started: ${notes.join("; ")}`);
}

/**
 * The WebGPU device of tfjs's current backend, or `null` on another backend: a page listens to
 * its `uncapturederror` events to see GPU errors.
 *
 * @returns the device or `null`
 */
export function webGpuDevice(): GPUDevice | null {
  if (tf.getBackend() !== "webgpu") return null;
  return (tf.backend() as WebGPUBackend).device;
}
