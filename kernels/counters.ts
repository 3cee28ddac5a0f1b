/**
 * Counting kernel dispatches: every program the webgpu backend runs is one dispatch, so wrapping
 * its `runWebGPUProgram` counts them; the direct dispatches of `direct.ts` count themselves in
 * {@link directDispatchStats}. Used by the benchmark and by the kernel tests.
 *
 * @module
 */
import { tf } from "../deps.ts";

/**
 * Dispatches recorded outside `runWebGPUProgram` (direct dispatches of `direct.ts` and replayed
 * ones of `capture.ts`) and the bind groups `direct.ts` created, since the process started.
 */
export const directDispatchStats: { dispatches: number; bindGroups: number } = {
  dispatches: 0,
  bindGroups: 0,
};

type Runner = { runWebGPUProgram?: (...args: unknown[]) => unknown };

/**
 * Runs `fn` and counts the dispatches of the current backend meanwhile (0 on a backend that is
 * not webgpu).
 *
 * @param fn the work to measure (sync or async)
 * @returns the number of dispatches
 * @example
 * ```ts
 * import { tf } from "../deps.ts";
 * import { countDispatches } from "./counters.ts";
 * await tf.setBackend("cpu");
 * console.log(await countDispatches(() => tf.add(1, 2).dispose())); // 0 on cpu
 * ```
 */
export async function countDispatches(fn: () => unknown): Promise<number> {
  const backend = tf.backend() as unknown as Runner;
  const original = backend.runWebGPUProgram;
  if (!original) {
    await fn();
    return 0;
  }
  let n = -directDispatchStats.dispatches;
  backend.runWebGPUProgram = function (this: unknown, ...args: unknown[]) {
    n++;
    return original.apply(this, args);
  };
  try {
    await fn();
  } finally {
    backend.runWebGPUProgram = original;
  }
  return n + directDispatchStats.dispatches;
}
