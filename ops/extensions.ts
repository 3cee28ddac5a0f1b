/**
 * What a backend offers beyond tfjs's kernel registry, asked for by name without naming the
 * backend: in-place multi-tensor updates (the SGD step, BatchNorm's running averages) and the
 * capture and replay of a whole step. A backend (the WebGPU layer's `installWebGpu`) provides
 * them with {@link provide}; `training/` and `models/` ask with {@link provided}, and use tf
 * ops where the current backend provides nothing.
 *
 * @module
 */
import { tf } from "../deps.ts";
import type { SgdHyper, SgdSlot } from "./sgd.ts";
import type { RunningStatsSlot } from "./batchnorm.ts";

/** Step capture and replay: captures a step once, replays it after (as CUDA graphs do). */
export interface CaptureExtension {
  /** Whether a capture can run now (the backend's conditions). */
  ready(): boolean;
  /**
   * Runs `fn` once and records its GPU work, unless it cannot be replayed (`recording: null`,
   * with the reason).
   */
  capture<T>(fn: () => T, state: readonly tf.TensorInfo[]): {
    result: T;
    recording: Capture | null;
    reason: string | null;
  };
  /** A new tensor with `t`'s values in storage of its own. */
  privateCopy(t: tf.TensorInfo): tf.Tensor;
  /** Copies `src`'s values into `dst` (same size), in order with the recorded work. */
  copy(src: tf.TensorInfo, dst: tf.TensorInfo): void;
  /** Drops a CPU copy of `t`'s values (the device wrote them). */
  forgetCpuCopy(t: tf.TensorInfo): void;
  /** A number per object, the same for its life (keys captures by their state's data ids). */
  id(obj: object): number;
}

/** A captured step, replayed by `replay()`. */
export interface Capture {
  /** Dispatches per replay. */
  readonly dispatches: number;
  /** Runs the recorded work again. */
  replay(): void;
  /** Frees the recording. */
  dispose(): void;
}

/** The extensions, by name. */
export interface Extensions {
  /** One in-place SGD update of every slot; returns the momentum buffers it made, by slot. */
  sgdStep: (slots: readonly SgdSlot[], h: SgdHyper) => (tf.Variable | null)[];
  /** BatchNorm's running averages of many layers, in place (and their batch counters). */
  runningStats: (slots: readonly RunningStatsSlot[]) => boolean;
  /** Step capture and replay. */
  capture: CaptureExtension;
  /**
   * The first device error since the last call (a shader that failed to compile, a validation
   * error, out of memory), then forgotten, or the loss of the device (reported from then on);
   * `null` when there was none.
   */
  deviceError: () => Error | null;
}

const KEY = Symbol.for("regnet-vision.extensions");
const store = globalThis as unknown as Record<symbol, Map<string, unknown> | undefined>;
const table: Map<string, unknown> = store[KEY] ??= new Map();

/**
 * Provides (or with `null` withdraws) an extension for a backend.
 *
 * @param backendName the backend
 * @param name the extension
 * @param impl its implementation
 */
export function provide<K extends keyof Extensions>(
  backendName: string,
  name: K,
  impl: Extensions[K] | null,
): void {
  const key = `${backendName}/${name}`;
  if (impl) table.set(key, impl);
  else table.delete(key);
}

/**
 * The extension of the current backend, if it provides one.
 *
 * @param name the extension
 * @returns the implementation, or `null`
 * @example
 * ```ts
 * import { provided } from "./extensions.ts";
 * console.log(provided("sgdStep") === null || typeof provided("sgdStep") === "function"); // true
 * ```
 */
export function provided<K extends keyof Extensions>(name: K): Extensions[K] | null {
  const backend = tf.getBackend();
  if (!backend) return null;
  return (table.get(`${backend}/${name}`) as Extensions[K] | undefined) ?? null;
}

/**
 * Throws the error the current backend's device reported since the last check, if any (see
 * `Extensions.deviceError`): a step whose GPU work failed throws instead of returning wrong
 * numbers. The training and evaluation entry points call it after their reads; nothing happens
 * on a backend without the extension.
 *
 * @throws Error with the GPU's message (and the failing kernel's program, where known)
 * @example
 * ```ts
 * import { throwIfDeviceFailed } from "./extensions.ts";
 * throwIfDeviceFailed(); // nothing failed
 * ```
 */
export function throwIfDeviceFailed(): void {
  const error = provided("deviceError")?.();
  if (error) throw error;
}
