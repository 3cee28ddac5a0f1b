/**
 * Cheaper kernel dispatches for tfjs-backend-webgpu 4.22, patched onto the live `WebGPUBackend`
 * instance (nothing in `node_modules` changes, and every model and kernel gains).
 *
 * What the stock backend spends per dispatch (`recordAndSubmit`), measured on llvmpipe with
 * 2,000 small `tf.add`s (`bench/dispatch.ts --profile`): a new bind group
 * (`device.createBindGroup`, the largest share), a uniform buffer from the pool filled by its own
 * `queue.writeBuffer`, a `getBindGroupLayout` call, and one `queue.submit` every
 * `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` (15) dispatches. Consecutive dispatches already share one
 * compute pass (the pass only ends at a submit), so there is no pass to save.
 *
 * The patch replaces `recordAndSubmit` with one that
 * - takes uniform buffers and bind groups from the runtime's cache (`cache.ts`): the uniform
 *   block of a dispatch (shapes, strides, sizes and the program's own uniforms, laid out exactly
 *   as the stock `makeUniforms` lays them out) is looked up by its bytes, so a training step with
 *   fixed shapes writes no uniforms after its first step; bind groups by (pipeline, output
 *   buffer, input buffers, uniform buffer);
 * - gives tensor buffers an affinity, so that those bind groups repeat: tfjs's pool hands out the
 *   last freed buffer, which differs from step to step (parameters move to new buffers every
 *   step); the patched pool hands a program the buffer its "site" (shader family, output shape,
 *   occurrence since the last read back to the host) had before when that one is free. Any free
 *   buffer of the right size is equally correct; only the bind group hit rate changes;
 * - raises `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` (fewer `queue.submit`s) while installed.
 *
 * The commands recorded are the same pipelines, over the same buffers, with the same uniform
 * bytes, in the same order, so results are bit-identical. Programs the patch does not cover
 * (timed programs under `tf.profile`/`tf.time`, pixel programs, texture or external bindings,
 * pipelines still compiling) go through the stock method. Cached uniform buffers live outside
 * tfjs's buffer manager (they are not in `tf.memory()`).
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../../deps.ts";
import { bindGroupOf, capturing, dropCached, programLayout, uniformBuffer } from "./cache.ts";
import { listen, ORDER } from "./patches.ts";
import { counters } from "./counters.ts";
import {
  type BackendInternals,
  type BufferManagerInternals,
  countInPass,
  currentBufferOf,
  encodeDispatch,
  hasFreeBuffer,
  holdUntilSubmit,
  internals,
  METHODS,
  packUniforms,
  registeredWebGpuBackend,
  SUBMIT_FLAG,
  takeFreeBuffer,
  timersActive,
  uniformFields,
} from "./tfjs.ts";

/** Options of {@link installDispatchCache}. */
export interface DispatchCacheOptions {
  /**
   * `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` while installed (dispatches per `queue.submit`; stock
   * 15); `null` leaves the flag alone. Default 64.
   */
  submitBatch?: number | null;
}

/** Counters of the patched path since install or `counters.reset("dispatchCache")`. */
const stats = counters.group("dispatchCache", {
  /** Dispatches encoded by the patched path. */
  dispatches: 0,
  /** Dispatches handed to the stock `recordAndSubmit` (uncovered programs). */
  stockDispatches: 0,
  bindGroupHits: 0,
  bindGroupMisses: 0,
  uniformHits: 0,
  uniformMisses: 0,
  /** Buffers the affinity handed out (the buffer the site had before). */
  affinityHits: 0,
  /** Buffers acquired inside a program run that the affinity could not hand out. */
  affinityMisses: 0,
});

/** Where the patch keeps its state on a backend; shared by every copy of this module. */
const STATE_KEY = Symbol.for("regnet-vision.dispatchCache");

/** Sites (program, inputs) the buffer affinity remembers before it forgets them all. */
const MAX_SITES = 32768;

/** What the patch holds for one backend (its caches are `cache.ts`'s). */
interface PatchState {
  /** Removes the listeners. */
  off: (() => void)[];
  /** The site of the program being run (`null` outside `runWebGPUProgram`). */
  site: string | null;
  /** Buffers acquired so far by the program being run. */
  siteOrdinal: number;
  /** The buffers each site got lately, most recent first. */
  sites: Map<string, GPUBuffer[]>;
  /** Programs run per signature since the last read back to the host. */
  occurrences: Map<string, number>;
  /** The flag value before install, and the value set (to restore only what we set). */
  savedFlag?: number;
  setFlag?: number;
  scratch: { buffer: ArrayBuffer };
}

type PatchedBackend = BackendInternals & { [STATE_KEY]?: PatchState };

function webgpuBackend(backend?: WebGPUBackend): PatchedBackend | null {
  const b = backend ?? registeredWebGpuBackend();
  return b ? internals(b) as PatchedBackend : null;
}

type RecordArgs = Parameters<BackendInternals[typeof METHODS.record]>;

/** The patched `recordAndSubmit`: cached uniforms and bind groups, or the stock method. */
function record(
  state: PatchState,
  be: BackendInternals,
  args: RecordArgs,
  stock: () => unknown,
): unknown {
  const [program, output, inputs, programUniforms] = args;
  const pipeline = program.pipeline;
  const useStock = (why: string) => {
    stats.stockDispatches++;
    capturing.current?.unsupported(`${program.shaderKey}: ${why}`);
    return stock();
  };
  if (pipeline instanceof Promise || timersActive(be) || program.pixelsOpType != null) {
    return useStock("stock dispatch path");
  }
  const buffers = [output, ...inputs].map((t) => currentBufferOf(be, t));
  if (buffers.includes(undefined)) return useStock("a tensor is not a buffer");
  const fields = uniformFields(program, output, inputs, programUniforms);
  const size = packUniforms(state.scratch, fields);
  if (size < 0) return useStock("uniform field too long");
  const uniform = uniformBuffer(be, state.scratch.buffer, size);
  stats[uniform.hit ? "uniformHits" : "uniformMisses"]++;
  const bound = buffers as GPUBuffer[];
  const layout = () => programLayout(be, pipeline);
  const { bindGroup, hit } = bindGroupOf(be, pipeline, layout, bound, uniform.buffer);
  stats[hit ? "bindGroupHits" : "bindGroupMisses"]++;
  // What the stock method does from here on, minus timing (handled by the stock path).
  holdUntilSubmit(be, [...inputs, output]);
  encodeDispatch(be, pipeline, bindGroup, program.dispatch);
  capturing.current?.dispatch(pipeline, bindGroup, program.dispatch, bound, uniform.buffer);
  stats.dispatches++;
  countInPass(be);
  return undefined;
}

/** How many buffers a site remembers. */
const SITE_MEMORY = 4;

/**
 * Around `runWebGPUProgram`: names the program's site while it runs: its shader family, output
 * shape, dtype and input count, and how many programs of that signature ran since the last read
 * back to the host. A training loop reads the loss once a step, so a step's sites are the same
 * every step whatever buffers its tensors had.
 */
function nameSite(state: PatchState, args: unknown[], next: () => unknown): unknown {
  const [program, inputs, outputDtype] = args as [ProgramLikeKey, unknown[], string];
  const signature = `${program.shaderKey}|${program.outputShape}|${outputDtype}|${inputs.length}`;
  const n = state.occurrences.get(signature) ?? 0;
  state.occurrences.set(signature, n + 1);
  const site = `${signature}@${n}`;
  const outer = state.site, outerOrdinal = state.siteOrdinal;
  state.site = site;
  state.siteOrdinal = 0;
  try {
    return next();
  } finally {
    state.site = outer;
    state.siteOrdinal = outerOrdinal;
  }
}

type ProgramLikeKey = { shaderKey?: string; outputShape: number[] };

/**
 * Around the buffer manager's `acquireBuffer`: inside a program's run, a reusable buffer is
 * taken from the free list by preference when the same site (and the same ordinal within it)
 * had it before; otherwise the stock choice (the last one freed). The bookkeeping is the stock
 * one.
 */
function acquireWithAffinity(
  state: PatchState,
  bm: BufferManagerInternals,
  args: unknown[],
  next: () => unknown,
): unknown {
  const [size, usage, , reuse = true] = args as [number, number, boolean?, boolean?];
  if (state.site === null || !reuse) return next();
  const site = `${state.site}#${state.siteOrdinal++}`;
  let recent = state.sites.get(site);
  if (recent !== undefined && hasFreeBuffer(bm, size, usage)) {
    for (let i = 0; i < recent.length; i++) {
      const buffer = recent[i];
      if (!takeFreeBuffer(bm, size, usage, buffer)) continue;
      if (i > 0) recent.unshift(recent.splice(i, 1)[0]);
      stats.affinityHits++;
      return buffer;
    }
  }
  const buffer = next() as GPUBuffer;
  stats.affinityMisses++;
  if (recent === undefined) {
    if (state.sites.size >= MAX_SITES) state.sites.clear();
    state.sites.set(site, recent = []);
  }
  recent.unshift(buffer);
  if (recent.length > SITE_MEMORY) recent.pop();
  return buffer;
}

/**
 * Patches the webgpu backend's dispatch path (see the module doc). Idempotent: a second call
 * on a patched backend changes nothing and returns true.
 *
 * @param options the submit batch
 * @param backend the backend to patch; tfjs's `webgpu` backend instance when absent
 * @returns true when the backend is patched, false when there is no webgpu backend
 * @example
 * ```ts
 * import { installDispatchCache, uninstallDispatchCache } from "./dispatch_cache.ts";
 * installDispatchCache(); // false when the webgpu backend was never initialised
 * uninstallDispatchCache();
 * ```
 */
export function installDispatchCache(
  options: DispatchCacheOptions = {},
  backend?: WebGPUBackend,
): boolean {
  const be = webgpuBackend(backend);
  if (be === null) return false;
  if (be[STATE_KEY]) return true;
  const submitBatch = options.submitBatch === undefined ? 64 : options.submitBatch;
  if (submitBatch !== null && !(Number.isInteger(submitBatch) && submitBatch >= 1)) {
    throw new RangeError(`submitBatch must be a positive integer or null, got ${submitBatch}`);
  }
  const state: PatchState = {
    off: [],
    site: null,
    siteOrdinal: 0,
    sites: new Map(),
    occurrences: new Map(),
    scratch: { buffer: new ArrayBuffer(1024) },
  };
  counters.reset("dispatchCache");
  const bm = be.bufferManager;
  state.off.push(
    listen(
      be,
      METHODS.record,
      ORDER.dispatchCache,
      (self, args, next) =>
        record(state, self as BackendInternals, args as RecordArgs, () => next(args)),
    ),
    listen(
      be,
      METHODS.run,
      ORDER.affinity,
      (_s, args, next) => nameSite(state, args, () => next(args)),
    ),
    listen(
      bm,
      METHODS.acquire,
      ORDER.affinity,
      (self, args, next) =>
        acquireWithAffinity(state, self as BufferManagerInternals, args, () => next(args)),
    ),
    listen(be, METHODS.read, ORDER.affinity, (_s, args, next) => {
      state.occurrences.clear(); // a read back to the host: the next step starts
      return next(args);
    }),
  );
  if (submitBatch !== null) {
    state.savedFlag = tf.env().get(SUBMIT_FLAG) as number;
    tf.env().set(SUBMIT_FLAG, submitBatch);
    state.setFlag = submitBatch;
  }
  be[STATE_KEY] = state;
  return true;
}

/**
 * Takes the patch off: submits what is recorded, destroys the cached uniform buffers, puts the
 * stock methods and the submit batch flag back. Idempotent.
 *
 * @param backend the patched backend; tfjs's `webgpu` backend instance when absent
 * @returns true when a patch was removed
 * @example
 * ```ts
 * import { uninstallDispatchCache } from "./dispatch_cache.ts";
 * console.log(uninstallDispatchCache()); // false: nothing was installed
 * ```
 */
export function uninstallDispatchCache(backend?: WebGPUBackend): boolean {
  const be = webgpuBackend(backend);
  const state = be?.[STATE_KEY];
  if (!be || !state) return false;
  dropCached(be); // submits first: recorded commands may bind the cached uniform buffers
  for (const off of state.off) off();
  state.off = [];
  state.sites.clear();
  if (state.setFlag !== undefined && tf.env().get(SUBMIT_FLAG) === state.setFlag) {
    tf.env().set(SUBMIT_FLAG, state.savedFlag as number);
  }
  delete be[STATE_KEY];
  return true;
}

/**
 * Whether the dispatch patch is on the backend.
 *
 * @param backend a backend; tfjs's `webgpu` backend instance when absent
 * @returns true when {@link installDispatchCache} patched it and it was not removed since
 * @example
 * ```ts
 * import { dispatchCacheInstalled } from "./dispatch_cache.ts";
 * console.log(dispatchCacheInstalled()); // false
 * ```
 */
export function dispatchCacheInstalled(backend?: WebGPUBackend): boolean {
  return webgpuBackend(backend)?.[STATE_KEY] !== undefined;
}

/**
 * The counters of the patched path (a copy), or `null` when the backend is not patched.
 *
 * @param backend a backend; tfjs's `webgpu` backend instance when absent
 * @returns dispatches, stock dispatches (tfjs's own), cache and affinity hits and misses
 * @example
 * ```ts
 * import { dispatchCacheStats } from "./dispatch_cache.ts";
 * console.log(dispatchCacheStats()); // null when not installed
 * ```
 */
export function dispatchCacheStats(backend?: WebGPUBackend): typeof stats | null {
  return dispatchCacheInstalled(backend) ? { ...stats } : null;
}
