/**
 * The one patch manager over tfjs's methods: each method of an object is wrapped once, and the
 * wrapper calls an ordered list of listeners, outermost first, each of which may run code
 * around the next one (`next(args)`), change its arguments or answer without it. When the last
 * listener of a method goes, the method the object had before is put back.
 *
 * Who listens where, outermost first ({@link ORDER}):
 *
 * | method | listeners |
 * | --- | --- |
 * | `runWebGPUProgram` | the device-error watch (names the program), dispatch counting (`countDispatches`), capture's program count, the buffer affinity's site naming |
 * | `recordAndSubmit` | the dispatch cache (records covered programs itself) |
 * | `getBufferData` | the buffer affinity (a read back starts a new step) |
 * | `readSync` | an error instead of tfjs's canvas read, where Deno has no 2D canvas |
 * | `BufferManager.acquireBuffer` | capture's buffer ownership, then the buffer affinity |
 * | `BufferManager.releaseBuffer` | capture's buffer ownership |
 * | `GPUDevice.createShaderModule`, `createComputePipeline` | the device-error watch (an error scope each) |
 *
 * The wrapper table lives on `globalThis` under a registered symbol, so two copies of this
 * module (imported by two URLs) share it.
 *
 * @module
 */

/** The position of each listener in its method's list: lower runs first (outer). */
export const ORDER = {
  /** GPU errors: the program being run names a pipeline that fails to build (`device_errors.ts`). */
  deviceErrors: -10,
  /** `dataSync()` on a GPU tensor: an error that says what to use (`tfjs.ts`). */
  explain: 0,
  /** Capture: buffer ownership and the count of programs run. */
  capture: 10,
  /** `countDispatches`. */
  count: 20,
  /** The dispatch cache's buffer affinity (site naming, buffer choice, step boundaries). */
  affinity: 30,
  /** The dispatch cache's own dispatch path. */
  dispatchCache: 40,
} as const;

/** A listener: gets the receiver, the arguments and the next listener (or the method). */
export type Listener = (
  self: unknown,
  args: unknown[],
  next: (args: unknown[]) => unknown,
) => unknown;

interface Entry {
  order: number;
  listener: Listener;
}

interface Slot {
  /** The own property the object had before the wrapper (undefined: none). */
  saved: PropertyDescriptor | undefined;
  /** The method called after the last listener. */
  method: (...args: unknown[]) => unknown;
  entries: Entry[];
  wrapper: (...args: unknown[]) => unknown;
}

const TABLE = Symbol.for("regnet-vision.patches");
const store = globalThis as unknown as Record<symbol, WeakMap<object, Map<string, Slot>>>;
const table: WeakMap<object, Map<string, Slot>> = store[TABLE] ??= new WeakMap();

function call(slot: Slot, i: number, self: unknown, args: unknown[]): unknown {
  const e = slot.entries[i];
  if (e === undefined) return slot.method.apply(self, args);
  return e.listener(self, args, (a) => call(slot, i + 1, self, a));
}

/**
 * Adds a listener to a method of an object (wrapping the method the first time).
 *
 * @param target the object whose method is wrapped (a backend, a buffer manager)
 * @param name the method
 * @param order the listener's position ({@link ORDER}); equal orders keep insertion order
 * @param listener the listener
 * @returns a function that removes this listener (idempotent)
 * @example
 * ```ts
 * import { listen } from "./patches.ts";
 * const o = { f: (x: number) => x + 1 };
 * const off = listen(o, "f", 0, (_self, args, next) => (next(args) as number) * 10);
 * console.log(o.f(1)); // 20
 * off();
 * console.log(o.f(1)); // 2
 * ```
 */
export function listen(
  target: object,
  name: string,
  order: number,
  listener: Listener,
): () => void {
  let slots = table.get(target);
  if (!slots) table.set(target, slots = new Map());
  let slot = slots.get(name);
  if (!slot) {
    const method = (target as Record<string, unknown>)[name];
    if (typeof method !== "function") throw new Error(`patches: ${name} is not a method`);
    const s: Slot = {
      saved: Object.getOwnPropertyDescriptor(target, name),
      method: method as Slot["method"],
      entries: [],
      wrapper: function (this: unknown, ...args: unknown[]) {
        return call(s, 0, this, args);
      },
    };
    (target as Record<string, unknown>)[name] = s.wrapper;
    slots.set(name, slot = s);
  }
  const entry: Entry = { order, listener };
  const at = slot.entries.findIndex((e) => e.order > order);
  if (at < 0) slot.entries.push(entry);
  else slot.entries.splice(at, 0, entry);
  const s = slot;
  return () => {
    const i = s.entries.indexOf(entry);
    if (i < 0) return;
    s.entries.splice(i, 1);
    if (s.entries.length > 0) return;
    if (s.saved) Object.defineProperty(target, name, s.saved);
    else delete (target as Record<string, unknown>)[name];
    slots!.delete(name);
  };
}
