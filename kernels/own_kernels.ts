/**
 * Registering the toolkit's own tfjs kernels (ops tfjs does not have: fused BatchNorm, grouped
 * convolution, squeeze-excitation, running statistics) for the webgpu backend, marked so that
 * unregistering removes only ours, whichever copy of these modules registered them.
 *
 * @module
 */
import { tf } from "../deps.ts";

/** Marks the kernel functions this toolkit registered (shared by every copy of the module). */
const OURS = Symbol.for("regnet-vision.ownKernel");

function isOurs(config: tf.KernelConfig | undefined): boolean {
  return config !== undefined &&
    (config.kernelFunc as unknown as Record<symbol, boolean>)[OURS] === true;
}

/**
 * Registers kernels for the webgpu backend. A name that already has a kernel keeps it, unless
 * `replace` is set and the kernel there is ours (new settings, same op).
 *
 * @param kernels names and kernel functions
 * @param replace re-register our kernels that are already there
 * @example
 * ```ts
 * import { registerOwnKernels, unregisterOwnKernels } from "./own_kernels.ts";
 * registerOwnKernels([["ExampleNoop", () => []]]);
 * unregisterOwnKernels(["ExampleNoop"]);
 * ```
 */
export function registerOwnKernels(
  kernels: readonly (readonly [string, tf.KernelFunc])[],
  replace = false,
): void {
  for (const [kernelName, kernelFunc] of kernels) {
    const current = tf.getKernel(kernelName, "webgpu");
    if (current !== undefined) {
      if (!replace || !isOurs(current)) continue;
      tf.unregisterKernel(kernelName, "webgpu");
    }
    (kernelFunc as unknown as Record<symbol, boolean>)[OURS] = true;
    tf.registerKernel({ kernelName, backendName: "webgpu", kernelFunc });
  }
}

/**
 * Removes those of the named webgpu kernels that this toolkit registered. Idempotent.
 *
 * @param names kernel names
 * @example
 * ```ts
 * import { unregisterOwnKernels } from "./own_kernels.ts";
 * unregisterOwnKernels(["ExampleNoop"]);
 * ```
 */
export function unregisterOwnKernels(names: readonly string[]): void {
  for (const name of names) {
    if (isOurs(tf.getKernel(name, "webgpu"))) tf.unregisterKernel(name, "webgpu");
  }
}

/**
 * The webgpu kernels this toolkit registered through {@link registerOwnKernels} (whichever copy
 * of this module did), in the registry's order.
 *
 * @returns their names
 * @example
 * ```ts
 * import { ownKernelNames, registerOwnKernels, unregisterOwnKernels } from "./own_kernels.ts";
 * registerOwnKernels([["ExampleNoop", () => []]]);
 * console.log(ownKernelNames().includes("ExampleNoop")); // true
 * unregisterOwnKernels(["ExampleNoop"]);
 * ```
 */
export function ownKernelNames(): string[] {
  return tf.getKernelsForBackend("webgpu").filter(isOurs).map((k) => k.kernelName);
}

/**
 * Whether an op has a kernel on the current backend.
 *
 * @param name kernel name
 * @returns true when `tf.getBackend()` has a kernel of that name
 * @example
 * ```ts
 * import { kernelOnCurrentBackend } from "./own_kernels.ts";
 * console.log(kernelOnCurrentBackend("NoSuchKernel")); // false
 * ```
 */
export function kernelOnCurrentBackend(name: string): boolean {
  const backend = tf.getBackend();
  return backend !== undefined && backend !== null && tf.getKernel(name, backend) !== undefined;
}
