/**
 * Installing the WebGPU layer on tfjs's webgpu backend: {@link installWebGpu} checks the tfjs
 * internals it relies on (`runtime/tfjs.ts`), registers everything of the list
 * (`kernels/list.ts`: GEMM kernels for tfjs's convolutions, the kernels of the toolkit's own
 * ops, and the extensions of `ops/extensions.ts`: in-place updates, step capture, device
 * errors), and patches the dispatch path (`runtime/dispatch_cache.ts`). It returns a handle that owns the tuning policies
 * and the counter registry, and takes everything off again with `uninstall()`. Model code does
 * not change: it calls `ops/` and tf ops, and the backend picks the kernels.
 *
 * @module
 */
import { type CounterRegistry, counters } from "./runtime/counters.ts";
import { unwatchDevice, watchDevice } from "./runtime/device_errors.ts";
import {
  type DispatchCacheOptions,
  installDispatchCache,
  uninstallDispatchCache,
} from "./runtime/dispatch_cache.ts";
import { adapterInfoOf, assertTfjsInternals, registeredWebGpuBackend } from "./runtime/tfjs.ts";
import { CPU_SPLIT_POLICY, DEFAULT_SPLIT_POLICY, type SplitPolicy } from "./kernels/conv_gemm.ts";
import { CONV_KERNEL_NAMES, type ConvKernelName } from "./kernels/conv.ts";
import type { TuningPolicies } from "./kernels/declare.ts";
import { EXTENSIONS, KERNELS } from "./kernels/list.ts";
import {
  ownKernelRegistered,
  provideExtensions,
  registerKernels,
  unregisterKernels,
} from "./kernels/registry.ts";

export { CONV_KERNEL_NAMES, type ConvKernelName };

/** The adapter kinds the kernels are tuned for. */
export type KernelProfile = "gpu" | "cpu";

/** Options of {@link installWebGpu}. */
export interface WebGpuOptions {
  /** Which of tfjs's convolution kernels to replace; all of {@link CONV_KERNEL_NAMES} when absent. */
  kernels?: readonly ConvKernelName[];
  /**
   * Which adapter the kernels are tuned for: `gpu` (workgroup-tiled GEMMs,
   * {@link DEFAULT_SPLIT_POLICY}), `cpu` (register-blocked GEMMs, {@link CPU_SPLIT_POLICY}), or
   * `auto` (the default): `cpu` on Deno's software adapters, else `gpu` ({@link profileFor}).
   */
  profile?: "auto" | KernelProfile;
  /** Split-K knobs over the profile's policy (convolutions and the depthwise filter gradient). */
  split?: Partial<SplitPolicy>;
  /** Options of the dispatch path's patch (submit batch, cache bounds). */
  dispatchCache?: DispatchCacheOptions;
}

/** What {@link installWebGpu} returns: the install's policies and counters, and its undo. */
export interface WebGpuHandle {
  /** The adapter profile in force. */
  readonly profile: KernelProfile;
  /** The options of the install in force (profile resolved), to put a registration back. */
  readonly options: WebGpuOptions;
  /** The tuning knobs the kernels read (live: a second install updates them). */
  readonly policies: TuningPolicies;
  /** Every counter of the WebGPU layer, by group (`conv`, `fusedBatchNorm`, `direct`...). */
  readonly counters: CounterRegistry;
  /** Whether the install is still in force. */
  readonly installed: boolean;
  /** Takes every kernel, extension and patch off (idempotent). */
  uninstall(): void;
}

/** Where the WebGPU layer runs: Deno's WebGPU (wgpu) or a browser's. */
export type WebGpuRuntime = "deno" | "browser";

/** The adapter fields {@link profileFor} reads (a subset of `GPUAdapterInfo`). */
export interface AdapterFacts {
  /** True for a software (fallback) adapter. */
  isFallbackAdapter?: boolean;
  /** The adapter's description (`"llvmpipe (LLVM 15.0.6, 256 bits)"`, `"NVIDIA H200"`). */
  description?: string;
  /** The device name or id. */
  device?: string;
  /** The vendor name or id. */
  vendor?: string;
  /** The architecture (`"swiftshader"` in Chromium). */
  architecture?: string;
}

/**
 * The one rule for which kernel tuning an adapter gets. `cpu` (register-blocked, fully unrolled
 * GEMMs, {@link CPU_SPLIT_POLICY}) only on Deno's software adapters: Mesa's llvmpipe / lavapipe,
 * or any adapter Deno's WebGPU calls a fallback, where the cpu tuning was measured faster than
 * the tiled one. `gpu` everywhere else, a browser's fallback adapter (SwiftShader) included:
 * SwiftShader builds the cpu tuning's 32-55 KB unrolled shaders in 7 s to over 4 minutes each,
 * while the gpu tuning gave ResNet20's first logits in 6 s in headless Chromium.
 *
 * @param info the adapter's information (`adapter.info`, or tfjs's copy of it)
 * @param runtime where the layer runs (`typeof Deno !== "undefined"` tells it)
 * @returns the profile
 * @example
 * ```ts
 * import { profileFor } from "./install.ts";
 * const llvmpipe = { isFallbackAdapter: true, description: "llvmpipe (LLVM 15.0.6, 256 bits)" };
 * console.log(profileFor(llvmpipe, "deno")); // cpu
 * console.log(profileFor({ isFallbackAdapter: true, architecture: "swiftshader" }, "browser")); // gpu
 * ```
 */
export function profileFor(info: AdapterFacts, runtime: WebGpuRuntime): KernelProfile {
  if (runtime !== "deno") return "gpu";
  if (info.isFallbackAdapter === true) return "cpu";
  const names = [info.description, info.device, info.vendor, info.architecture].join(" ");
  return /llvmpipe|lavapipe/i.test(names) ? "cpu" : "gpu";
}

/**
 * The profile for the current webgpu backend's adapter, by {@link profileFor} in the current
 * runtime: `cpu` on Deno's software adapters (llvmpipe, lavapipe), else `gpu`.
 *
 * @returns the profile; `gpu` when the backend is not webgpu or says nothing of its adapter
 * @example
 * ```ts
 * import { adapterProfile } from "./install.ts";
 * console.log(["gpu", "cpu"].includes(adapterProfile())); // true
 * ```
 */
export function adapterProfile(): KernelProfile {
  const backend = registeredWebGpuBackend();
  const info = backend ? adapterInfoOf(backend) : undefined;
  return info ? profileFor(info, typeof Deno !== "undefined" ? "deno" : "browser") : "gpu";
}

const CURRENT = Symbol.for("regnet-vision.webgpuInstall");
const store = globalThis as unknown as Record<symbol, Install | null | undefined>;

/**
 * The tuning policies of a profile, before any knob of the options.
 *
 * @param profile the adapter profile
 * @returns new policies
 * @example
 * ```ts
 * import { defaultPolicies } from "./install.ts";
 * console.log(defaultPolicies("cpu").conv.layout); // register
 * ```
 */
export function defaultPolicies(profile: KernelProfile): TuningPolicies {
  return {
    conv: { ...(profile === "cpu" ? CPU_SPLIT_POLICY : DEFAULT_SPLIT_POLICY) },
    depthwise: { ...DEFAULT_SPLIT_POLICY },
    grouped: { ...DEFAULT_SPLIT_POLICY },
  };
}

class Install implements WebGpuHandle {
  profile: KernelProfile = "gpu";
  /** The options of the install in force (profile resolved). */
  options: WebGpuOptions = {};
  readonly policies: TuningPolicies = defaultPolicies("gpu");
  readonly counters: CounterRegistry = counters;
  installed = true;

  uninstall(): void {
    if (!this.installed) return;
    this.installed = false;
    if (store[CURRENT] === this) store[CURRENT] = null;
    teardown();
  }
}

/** Takes every kernel, extension and patch of the WebGPU layer off. */
function teardown(): void {
  provideExtensions(EXTENSIONS, false);
  const backend = registeredWebGpuBackend();
  if (backend) unwatchDevice(backend);
  unregisterKernels(KERNELS);
  uninstallDispatchCache();
}

/**
 * Installs the WebGPU layer (see the module doc). Idempotent: a second call updates the profile
 * and the policies of the install in force and returns its handle. Kernels are registered even
 * before the webgpu backend starts; the dispatch patch needs the started backend (it is applied
 * when one is there).
 *
 * @param options which convolution kernels, the adapter profile, split-K knobs, patch options
 * @returns the handle
 * @throws Error when the running tfjs is not the version `runtime/tfjs.ts` describes
 * @example
 * ```ts
 * import { installWebGpu } from "./install.ts";
 * const gpu = installWebGpu();
 * console.log(gpu.installed); // true
 * gpu.uninstall();
 * ```
 */
export function installWebGpu(options: WebGpuOptions = {}): WebGpuHandle {
  const backend = registeredWebGpuBackend();
  if (backend) assertTfjsInternals(backend);
  const install = store[CURRENT] ?? new Install();
  store[CURRENT] = install;
  const profile = !options.profile || options.profile === "auto"
    ? adapterProfile()
    : options.profile;
  install.profile = profile;
  install.options = { ...options, profile, split: { ...options.split } };
  const base = defaultPolicies(profile);
  Object.assign(install.policies.conv, base.conv, options.split);
  Object.assign(install.policies.depthwise, base.depthwise, options.split);
  Object.assign(install.policies.grouped, base.grouped);
  provideExtensions(EXTENSIONS, true);
  if (backend) watchDevice(backend);
  const convs = new Set<string>(options.kernels ?? CONV_KERNEL_NAMES);
  registerKernels(
    KERNELS.filter((k) => !k.replacesStock || convs.has(k.kernelName)),
    install.policies,
  );
  installDispatchCache(options.dispatchCache);
  return install;
}

/**
 * The install in force, or `null`.
 *
 * @returns the handle of the last {@link installWebGpu} not yet uninstalled
 * @example
 * ```ts
 * import { webGpuInstall } from "./install.ts";
 * console.log(webGpuInstall()); // null
 * ```
 */
export function webGpuInstall(): WebGpuHandle | null {
  return store[CURRENT] ?? null;
}

/**
 * Every webgpu kernel of this toolkit registered now, in the registration list's order (the
 * replacements of tfjs's own kernels first, then the toolkit's own ops). Read from tfjs's
 * registry, so a kernel added to `kernels/list.ts` is listed without further code (the
 * differential test, `tests/kernels_differential_test.ts`, enumerates them with this).
 *
 * @returns kernel names
 * @example
 * ```ts
 * import { registeredKernelNames } from "./install.ts";
 * console.log(Array.isArray(registeredKernelNames())); // true
 * ```
 */
export function registeredKernelNames(): string[] {
  return KERNELS.map((k) => k.kernelName).filter(ownKernelRegistered);
}

/**
 * {@link installWebGpu} without the handle (the name of earlier releases).
 *
 * @param options as {@link installWebGpu}'s
 * @example
 * ```ts
 * import { registerFastKernels, unregisterFastKernels } from "./install.ts";
 * registerFastKernels();
 * unregisterFastKernels();
 * ```
 */
export function registerFastKernels(options: WebGpuOptions = {}): void {
  installWebGpu(options);
}

/**
 * Takes the WebGPU layer off (the install in force, and any kernel of ours registered by another
 * copy of these modules): tfjs's stock kernels and dispatch path come back. Idempotent.
 *
 * @example
 * ```ts
 * import { unregisterFastKernels } from "./install.ts";
 * unregisterFastKernels();
 * ```
 */
export function unregisterFastKernels(): void {
  const install = store[CURRENT];
  if (install) install.uninstall();
  else teardown();
}
