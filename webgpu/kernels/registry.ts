/**
 * Registering the kernels of the list (`list.ts`) for the webgpu backend and removing them:
 * kernels of our own ops are added; kernels that replace a stock tfjs kernel keep the stock one
 * (tfjs's own kernel) and put it back when removed. Our kernel functions are marked, so that a
 * second copy of these modules recognises them.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { provide } from "../../ops/extensions.ts";
import { declareLimits } from "../../ops/support.ts";
import type { ExtensionEntry, KernelEntry, TuningPolicies } from "./declare.ts";

/** Marks the kernel functions this toolkit registered (shared by every copy of the module). */
const OURS = Symbol.for("regnet-vision.ownKernel");
/** Stock configs of replaced kernels, shared by every copy of this module in the process. */
const STOCK_KEY = Symbol.for("regnet-vision.stockKernels");
const globalStore = globalThis as unknown as Record<symbol, Map<string, tf.KernelConfig>>;
const stock: Map<string, tf.KernelConfig> = globalStore[STOCK_KEY] ??= new Map();

function isOurs(config: tf.KernelConfig | undefined): boolean {
  return config !== undefined &&
    (config.kernelFunc as unknown as Record<symbol, boolean>)[OURS] === true;
}

/**
 * Registers the kernels for the webgpu backend; ours already there are replaced (the policies
 * object may be another install's).
 */
export function registerKernels(entries: readonly KernelEntry[], policies: TuningPolicies): void {
  for (const entry of entries) {
    const name = entry.kernelName;
    const current = tf.getKernel(name, "webgpu");
    let stockKernel: tf.KernelFunc | undefined;
    if (entry.replacesStock) {
      const original = isOurs(current) ? stock.get(name) : current;
      if (original === undefined) continue; // no stock kernel to replace
      if (!isOurs(current)) stock.set(name, original);
      stockKernel = original.kernelFunc;
    } else if (current !== undefined && !isOurs(current)) {
      continue; // someone else's kernel of that name: left alone
    }
    if (current !== undefined) tf.unregisterKernel(name, "webgpu");
    const kernelFunc = entry.make(policies, stockKernel);
    (kernelFunc as unknown as Record<symbol, boolean>)[OURS] = true;
    tf.registerKernel({ kernelName: name, backendName: "webgpu", kernelFunc });
    if (entry.limits) declareLimits(name, "webgpu", entry.limits);
  }
}

/**
 * Removes those of the kernels that this toolkit registered, putting stock ones back.
 * Idempotent.
 */
export function unregisterKernels(entries: readonly KernelEntry[]): void {
  for (const entry of entries) {
    const name = entry.kernelName;
    if (!isOurs(tf.getKernel(name, "webgpu"))) continue;
    tf.unregisterKernel(name, "webgpu");
    declareLimits(name, "webgpu", null);
    const original = stock.get(name);
    if (entry.replacesStock && original !== undefined) {
      tf.registerKernel(original);
      stock.delete(name);
    }
  }
}

/**
 * Whether our kernel for `name` is the one registered for webgpu now.
 *
 * @param name a kernel name
 * @returns true when the toolkit's kernel is registered
 * @example
 * ```ts
 * import { ownKernelRegistered } from "./registry.ts";
 * console.log(ownKernelRegistered("Conv2D")); // false
 * ```
 */
export function ownKernelRegistered(name: string): boolean {
  return isOurs(tf.getKernel(name, "webgpu"));
}

/** Provides the extensions for the webgpu backend, or withdraws them. */
export function provideExtensions(entries: readonly ExtensionEntry[], on: boolean): void {
  for (const e of entries) provide("webgpu", e.name, on ? e.impl as never : null);
}
