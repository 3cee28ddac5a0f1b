/**
 * Capture once, replay many times: the WebGPU counterpart of a CUDA graph. A capture runs a
 * function (a training step) once through tfjs, as usual, and keeps the list of GPU commands it
 * recorded: every dispatch (pipeline, bind group, workgroups) and buffer copy. A replay encodes
 * that list again: the same kernels over the same buffers, with none of tfjs's per-op work
 * (kernel lookup, shader keys, uniforms, gradient tape, tensor bookkeeping).
 *
 * What makes that correct:
 * - **Buffers stay put.** Every storage buffer tfjs hands out during the capture belongs to the
 *   recording from then on: when its tensor is disposed, the buffer goes back to the capture
 *   (which hands it out again later in the same capture, as tfjs's pool would), never to tfjs's
 *   pool. Buffers filled from the CPU during the capture (constants) are never handed out again.
 *   A capture's buffers return to tfjs when it is disposed.
 * - **Nothing else is touched.** Every buffer a command binds is the capture's, a uniform
 *   buffer (pinned while the capture lives), or a buffer of a tensor the caller declared as
 *   state (parameters, optimizer buffers: they must be updated in place, see `direct.ts`).
 *   A capture fails (returns no capture) when a command binds anything else, when a program
 *   takes tfjs's stock dispatch path (not recorded), or when a dispatch happens outside the
 *   recorded paths.
 * - **Values come from the GPU.** What the function computes on the CPU (tfjs runs small ops on
 *   CPU-resident data there) is not replayed; the caller keeps such work out of the capture.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../../deps.ts";
import type { CaptureExtension } from "../../ops/extensions.ts";
import { type CaptureHooks, capturing, objectId, pinUniform } from "./cache.ts";
import { copyTensor, forgetCpuCopy, privateCopy } from "./direct.ts";
import { directCounters } from "./counters.ts";
import { dispatchCacheInstalled } from "./dispatch_cache.ts";
import { listen, ORDER } from "./patches.ts";
import {
  type BackendInternals,
  type BufferManagerInternals,
  bufferOf,
  encodeCopy,
  encodeDispatch,
  flushCommands,
  internals,
  METHODS,
  poolKey,
  timersActive,
} from "./tfjs.ts";

type Command =
  | {
    kind: "dispatch";
    pipeline: GPUComputePipeline;
    bindGroup: GPUBindGroup;
    workgroups: [number, number, number];
  }
  | { kind: "copy"; src: GPUBuffer; dst: GPUBuffer; size: number };

/** The buffer-manager listeners: which recording owns a buffer, and which capture runs. */
interface Ownership {
  owner: Map<GPUBuffer, Capture>;
  capturing: Capture | null;
}

const OWNERSHIP = Symbol.for("regnet-vision.captureOwnership");

/**
 * The ownership listeners of a backend's buffer manager (installed once, outermost on
 * `acquireBuffer` and `releaseBuffer`): during a capture, storage buffers tfjs hands out belong
 * to the capture; a buffer a capture owns goes back to it, not to tfjs's pool.
 */
function ownershipOf(be: BackendInternals): Ownership {
  const bm = be.bufferManager as BufferManagerInternals & { [OWNERSHIP]?: Ownership };
  const existing = bm[OWNERSHIP];
  if (existing) return existing;
  const o: Ownership = { owner: new Map(), capturing: null };
  bm[OWNERSHIP] = o;
  listen(bm, METHODS.acquire, ORDER.capture, (_self, args, next) => {
    const [size, usage, mapped = false, reuse = true] = args as [
      number,
      number,
      boolean?,
      boolean?,
    ];
    const rec = o.capturing;
    if (!rec || !reuse || (usage & GPUBufferUsage.STORAGE) === 0) return next(args);
    if (!mapped) {
      const parked = rec.takeParked(size, usage);
      if (parked) return parked;
    }
    const buffer = next(args) as GPUBuffer;
    rec.adopt(buffer, mapped);
    o.owner.set(buffer, rec);
    return buffer;
  });
  listen(bm, METHODS.release, ORDER.capture, (_self, args, next) => {
    const rec = o.owner.get(args[0] as GPUBuffer);
    if (!rec) return next(args);
    rec.park(args[0] as GPUBuffer);
    return undefined;
  });
  return o;
}

/**
 * The commands of one capture, and the buffers they use. Replay with {@link Capture.replay};
 * free with {@link Capture.dispose}.
 */
export class Capture {
  /** The recorded commands, in order. */
  readonly commands: Command[] = [];
  /** Why the capture failed, or `null`. */
  failure: string | null = null;
  #backend: WebGPUBackend;
  #owned = new Set<GPUBuffer>();
  #constants = new Set<GPUBuffer>();
  /** Owned buffers no tensor holds now, by `size_usage`. */
  #parked = new Map<string, GPUBuffer[]>();
  #uniforms = new Set<GPUBuffer>();
  /** Constants whose tensors were disposed (kept, never parked). */
  #constantsReleased = new Set<GPUBuffer>();
  #disposed = false;

  /** @param backend the webgpu backend */
  constructor(backend: WebGPUBackend) {
    this.#backend = backend;
  }

  /** Dispatches per replay. */
  get dispatches(): number {
    return this.commands.filter((c) => c.kind === "dispatch").length;
  }

  /** Bytes of the buffers the capture owns. */
  get bytes(): number {
    let n = 0;
    for (const b of this.#owned) n += b.size;
    return n;
  }

  /** Whether the capture owns a buffer. */
  owns(buffer: GPUBuffer): boolean {
    return this.#owned.has(buffer);
  }

  /** @internal a buffer tfjs handed out during the capture */
  adopt(buffer: GPUBuffer, constant: boolean): void {
    this.#owned.add(buffer);
    if (constant) this.#constants.add(buffer);
  }

  /** @internal a buffer of the capture that its tensor gave back */
  park(buffer: GPUBuffer): void {
    if (this.#constants.has(buffer)) {
      this.#constantsReleased.add(buffer); // holds a CPU upload: never handed out again
      return;
    }
    const key = poolKey(buffer.size, buffer.usage);
    let list = this.#parked.get(key);
    if (!list) this.#parked.set(key, list = []);
    list.push(buffer);
  }

  /** @internal a parked buffer for a new tensor during the capture, as tfjs's pool would */
  takeParked(size: number, usage: number): GPUBuffer | undefined {
    return this.#parked.get(poolKey(size, usage))?.pop();
  }

  /** @internal */
  record(
    c: Command,
    buffers: readonly GPUBuffer[],
    uniform: GPUBuffer | null,
    allowed: Set<GPUBuffer>,
  ) {
    if (this.failure) return;
    for (const [i, b] of buffers.entries()) {
      if (!this.#owned.has(b) && !allowed.has(b)) {
        const what = c.kind === "dispatch" ? `${c.pipeline.label || "a tfjs program"}` : "a copy";
        this.failure = `${what} binds (binding ${i}, ${b.size} bytes) a buffer from before ` +
          "the capture that is not state";
        return;
      }
    }
    if (uniform && !this.#uniforms.has(uniform)) {
      this.#uniforms.add(uniform);
      pinUniform(uniform, 1);
    }
    this.commands.push(c);
  }

  /**
   * Encodes the commands again, in the backend's command stream, and submits them.
   */
  replay(): void {
    if (this.#disposed) throw new Error("Capture.replay: the capture was disposed");
    if (this.failure) throw new Error(`Capture.replay: the capture failed (${this.failure})`);
    const be = internals(this.#backend);
    for (const c of this.commands) {
      if (c.kind === "dispatch") {
        encodeDispatch(be, c.pipeline, c.bindGroup, c.workgroups);
        directCounters.dispatches++;
      } else {
        encodeCopy(be, c.src, c.dst, c.size);
      }
    }
    flushCommands(be);
  }

  /**
   * Gives the capture's buffers back to tfjs (those a tensor still holds go back when it is
   * disposed) and unpins its uniforms. Idempotent.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const be = internals(this.#backend);
    const o = ownershipOf(be);
    // Buffers no tensor holds go back to tfjs's pool now; the others when their tensor goes.
    const free = new Set([...this.#parked.values()].flat());
    for (const b of this.#constantsReleased) free.add(b);
    for (const b of this.#owned) {
      o.owner.delete(b);
      if (free.has(b)) be.bufferManager.releaseBuffer(b, true); // no owner now: tfjs's pool
    }
    this.#owned.clear();
    this.#parked.clear();
    for (const u of this.#uniforms) pinUniform(u, -1);
    this.#uniforms.clear();
    this.commands.length = 0;
  }
}

/** What {@link capture} returns (its field `recording` is the capture: `ops/extensions.ts`'s name). */
export interface CaptureResult<T> {
  /** The function's result (computed as usual). */
  result: T;
  /** The capture, or `null` when the capture failed (see `reason`). */
  recording: Capture | null;
  /** Why the capture failed, or `null`. */
  reason: string | null;
}

/**
 * Runs `fn` once and records the GPU commands it issues (see the module doc). `fn` runs to
 * completion either way; its result is returned; the capture is `null` when the work cannot
 * be replayed (with the reason).
 *
 * @param backend the webgpu backend (with the toolkit's dispatch patch installed)
 * @param fn the work, which must issue its GPU work through tfjs programs and direct dispatches
 * @param state tensors from before the capture that the commands may bind (updated in place)
 * @returns the result and the capture
 */
export function capture<T>(
  backend: WebGPUBackend,
  fn: () => T,
  state: readonly tf.TensorInfo[],
): CaptureResult<T> {
  const be = internals(backend);
  if (!dispatchCacheInstalled(backend)) {
    return { result: fn(), recording: null, reason: "the dispatch patch is not installed" };
  }
  if (capturing.current !== null) {
    return { result: fn(), recording: null, reason: "a capture is already running" };
  }
  if (timersActive(be)) {
    return { result: fn(), recording: null, reason: "a profiler is timing kernels" };
  }
  const o = ownershipOf(be);
  const rec = new Capture(backend);
  const allowed = new Set(state.map((t) => bufferOf(be, t)));
  // Everything recorded before the capture is submitted first: the capture starts clean.
  flushCommands(be);
  let programs = 0, dispatched = 0;
  const hooks: CaptureHooks = {
    dispatch(pipeline, bindGroup, workgroups, buffers, uniform) {
      dispatched++;
      const w: [number, number, number] = [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1];
      rec.record(
        { kind: "dispatch", pipeline, bindGroup, workgroups: w },
        buffers,
        uniform,
        allowed,
      );
    },
    copy(src, dst, size) {
      rec.record({ kind: "copy", src, dst, size }, [src, dst], null, allowed);
    },
    unsupported(reason) {
      rec.failure ??= reason;
    },
  };
  const off = listen(be, METHODS.run, ORDER.capture, (_self, args, next) => {
    programs++;
    return next(args);
  });
  const directBefore = directCounters.dispatches;
  capturing.current = hooks;
  o.capturing = rec;
  let result: T;
  try {
    result = fn();
  } finally {
    o.capturing = null;
    capturing.current = null;
    off();
  }
  const direct = directCounters.dispatches - directBefore;
  if (!rec.failure && dispatched !== programs + direct) {
    rec.failure = `${programs + direct - dispatched} dispatches took an unrecorded path`;
  }
  const after = new Set(state.map((t) => bufferOf(be, t)));
  if (!rec.failure && [...allowed].some((b) => !after.has(b))) {
    rec.failure = "a state tensor moved to another buffer (not updated in place)";
  }
  if (rec.failure) {
    const reason = rec.failure;
    rec.dispose();
    return { result, recording: null, reason };
  }
  return { result, recording: rec, reason: null };
}

/** Step capture and replay on the webgpu backend: the `capture` extension of `ops/extensions.ts`. */
export const STEP_CAPTURE: CaptureExtension = {
  ready: () => dispatchCacheInstalled(),
  capture: (fn, state) => capture(tf.backend() as WebGPUBackend, fn, state),
  privateCopy: (t) => privateCopy(tf.backend() as WebGPUBackend, t),
  copy: (src, dst) => copyTensor(tf.backend() as WebGPUBackend, src, dst),
  forgetCpuCopy: (t) => forgetCpuCopy(tf.backend() as WebGPUBackend, t),
  id: objectId,
};
