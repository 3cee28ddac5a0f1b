/**
 * Which ops have a kernel on the current backend, asked without naming a backend: an op runs its
 * fused kernel where {@link kernelAccepts} says so, else its composite of tf ops. A backend that
 * registers a kernel with limits (shapes it cannot take) declares them with
 * {@link declareLimits}; beyond them the op runs its composite of tf ops.
 *
 * @module
 */
import { tf } from "../deps.ts";

/** Whether a kernel takes a call: the op's inputs' shapes and its attributes. */
export type KernelLimits = (shapes: readonly (readonly number[])[], attrs: unknown) => boolean;

const LIMITS = Symbol.for("regnet-vision.kernelLimits");
const store = globalThis as unknown as Record<symbol, Map<string, KernelLimits> | undefined>;
const limits: Map<string, KernelLimits> = store[LIMITS] ??= new Map();

/**
 * Whether an op has a kernel on the current backend.
 *
 * @param name kernel name
 * @returns true when `tf.getBackend()` has a kernel of that name
 * @example
 * ```ts
 * import { kernelOnCurrentBackend } from "./support.ts";
 * console.log(kernelOnCurrentBackend("NoSuchKernel")); // false
 * ```
 */
export function kernelOnCurrentBackend(name: string): boolean {
  const backend = tf.getBackend();
  return backend !== undefined && backend !== null && tf.getKernel(name, backend) !== undefined;
}

/**
 * Declares the limits of a backend's kernel (`null` removes them).
 *
 * @param kernelName the kernel
 * @param backendName the backend it is registered for
 * @param accepts the limits
 */
export function declareLimits(
  kernelName: string,
  backendName: string,
  accepts: KernelLimits | null,
): void {
  const key = `${backendName}/${kernelName}`;
  if (accepts) limits.set(key, accepts);
  else limits.delete(key);
}

/**
 * Whether the current backend has a kernel for the op that takes this call.
 *
 * @param kernelName the kernel
 * @param shapes the shapes of the op's inputs
 * @param attrs the op's attributes
 * @returns true when the kernel is registered and within its declared limits
 * @example
 * ```ts
 * import { kernelAccepts } from "./support.ts";
 * console.log(kernelAccepts("NoSuchKernel", [[1]], {})); // false
 * ```
 */
export function kernelAccepts(
  kernelName: string,
  shapes: readonly (readonly number[])[],
  attrs: unknown,
): boolean {
  if (!kernelOnCurrentBackend(kernelName)) return false;
  const accepts = limits.get(`${tf.getBackend()}/${kernelName}`);
  return accepts === undefined || accepts(shapes, attrs);
}
