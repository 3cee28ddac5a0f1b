/**
 * One counter registry for the whole WebGPU layer: every kernel and the runtime count into a
 * named group of it (`conv`, `fusedBatchNorm`, `direct`...), `installWebGpu`'s handle hands it
 * out, and one `reset` zeroes any group or all of them. {@link countDispatches} counts the
 * dispatches of a piece of work (tfjs programs through the patch manager, direct and replayed
 * ones through the `direct` group).
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { listen, ORDER } from "./patches.ts";
import { METHODS } from "./tfjs.ts";

/** A named group of counters. */
export type CounterGroup = Record<string, number>;

/** The registry: named groups of counters. */
export class CounterRegistry {
  #groups = new Map<string, { zero: CounterGroup; live: CounterGroup }>();

  /**
   * The live group of that name, made with the fields given the first time.
   *
   * @param name the group
   * @param fields its counters and their zero values
   * @returns the live counters (increment them in place)
   */
  group<T extends CounterGroup>(name: string, fields: T): T {
    let g = this.#groups.get(name);
    if (!g) this.#groups.set(name, g = { zero: { ...fields }, live: { ...fields } });
    return g.live as T;
  }

  /**
   * A copy of one group's counters.
   *
   * @param name the group
   * @returns its counters (empty when no kernel made the group yet)
   */
  read(name: string): CounterGroup {
    return { ...(this.#groups.get(name)?.live ?? {}) };
  }

  /**
   * A copy of every group.
   *
   * @returns the groups by name
   */
  snapshot(): Record<string, CounterGroup> {
    const out: Record<string, CounterGroup> = {};
    for (const [name, g] of this.#groups) out[name] = { ...g.live };
    return out;
  }

  /**
   * Zeroes one group, or all of them.
   *
   * @param name the group; every group when absent
   */
  reset(name?: string): void {
    for (const [n, g] of this.#groups) {
      if (name === undefined || n === name) Object.assign(g.live, g.zero);
    }
  }
}

const KEY = Symbol.for("regnet-vision.counters");
const store = globalThis as unknown as Record<symbol, CounterRegistry | undefined>;

/** The process's registry (shared by every copy of this module). */
export const counters: CounterRegistry = store[KEY] ??= new CounterRegistry();

/**
 * Dispatches recorded outside `runWebGPUProgram` (direct dispatches and replayed ones) and the
 * bind groups direct dispatches created.
 */
export const directCounters: { dispatches: number; bindGroups: number } = counters.group(
  "direct",
  { dispatches: 0, bindGroups: 0 },
);

/**
 * Runs `fn` and counts the dispatches of the current backend meanwhile (0 on a backend that is
 * not webgpu).
 *
 * @param fn the work to measure (sync or async)
 * @returns the number of dispatches
 * @example
 * ```ts
 * import { tf } from "../../deps.ts";
 * import { countDispatches } from "./counters.ts";
 * await tf.setBackend("cpu");
 * console.log(await countDispatches(() => tf.add(1, 2).dispose())); // 0 on cpu
 * ```
 */
export async function countDispatches(fn: () => unknown): Promise<number> {
  const backend = tf.backend() as unknown as { runWebGPUProgram?: unknown };
  if (typeof backend.runWebGPUProgram !== "function") {
    await fn();
    return 0;
  }
  let n = -directCounters.dispatches;
  const off = listen(backend, METHODS.run, ORDER.count, (_self, args, next) => {
    n++;
    return next(args);
  });
  try {
    await fn();
  } finally {
    off();
  }
  return n + directCounters.dispatches;
}
