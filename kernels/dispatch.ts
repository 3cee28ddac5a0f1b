/**
 * Cheaper kernel dispatches for tfjs-backend-webgpu 4.22, patched onto the live `WebGPUBackend`
 * instance (nothing in `node_modules` changes, and every model and kernel gains).
 *
 * What the stock backend spends per dispatch (`recordAndSubmit`), measured on llvmpipe with
 * 2,000 small `tf.add`s (`kernels/bench_dispatch.ts --profile`): a new bind group
 * (`device.createBindGroup`, the largest share), a uniform buffer from the pool filled by its own
 * `queue.writeBuffer`, a `getBindGroupLayout` call, and one `queue.submit` every
 * `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` (15) dispatches. Consecutive dispatches already share one
 * compute pass (the pass only ends at a submit), so there is no pass to save.
 *
 * The patch replaces `recordAndSubmit` with one that
 * - keeps uniform buffers by content: the uniform block of a dispatch (shapes, strides, sizes and
 *   the program's own uniforms, laid out exactly as the stock `makeUniforms` lays them out) is
 *   looked up by its bytes; a buffer with those bytes is written once and never again, so a
 *   training step with fixed shapes writes no uniforms after its first step;
 * - caches bind groups by (pipeline, output buffer, input buffers, uniform buffer);
 * - gives tensor buffers an affinity, so that those bind groups repeat: tfjs's pool hands out the
 *   last freed buffer, which differs from step to step (parameters move to new buffers every
 *   step); the patched pool hands a program the buffer its "site" (shader family, output shape,
 *   occurrence since the last read back to the host) had before when that one is free. Any free
 *   buffer of the right size is equally correct; only the bind group hit rate changes;
 * - caches each pipeline's bind group layout;
 * - raises `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` (fewer `queue.submit`s) while installed.
 *
 * The commands recorded are the same pipelines, over the same buffers, with the same uniform
 * bytes, in the same order, so results are bit-identical. Programs the patch does not cover
 * (timed programs under `tf.profile`/`tf.time`, pixel programs, texture or external bindings,
 * pipelines still compiling) go through the stock method. Cached uniform buffers live outside
 * tfjs's buffer manager (they are not in `tf.memory()`); both caches are bounded and are flushed
 * whole when full (the uniform buffers are destroyed after the next submit).
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import { pinnedUniforms, recorder } from "./recorder.ts";

/** Options of {@link installDispatchCache}. */
export interface DispatchCacheOptions {
  /**
   * `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` while installed (dispatches per `queue.submit`; stock
   * 15); `null` leaves the flag alone. Default {@link DEFAULT_SUBMIT_BATCH}.
   */
  submitBatch?: number | null;
  /** Bind groups kept before the caches are flushed; default 16,384. */
  maxBindGroups?: number;
  /** Uniform buffers kept before the caches are flushed; default 8,192. */
  maxUniformBuffers?: number;
  /**
   * Give a program the buffer it had the last time it ran with the same input buffers, when
   * that buffer is free (so bind groups repeat step after step); default true.
   */
  bufferAffinity?: boolean;
  /** Sites (program, inputs) remembered by the buffer affinity; default 32,768. */
  maxSites?: number;
}

/** Counters of the patched dispatch path since install or {@link resetDispatchCacheStats}. */
export interface DispatchCacheStats {
  /** Dispatches recorded by the patched path. */
  dispatches: number;
  /** Dispatches handed to the stock `recordAndSubmit` (uncovered programs). */
  fallbacks: number;
  /** Bind groups found in the cache. */
  bindGroupHits: number;
  /** Bind groups created. */
  bindGroupMisses: number;
  /** Uniform blocks found in the cache. */
  uniformHits: number;
  /** Uniform buffers created and written. */
  uniformMisses: number;
  /** Whole-cache flushes (a cache was full). */
  flushes: number;
  /** Buffers the affinity handed out (the buffer the site had before). */
  affinityHits: number;
  /** Buffers acquired inside a program run that the affinity could not hand out. */
  affinityMisses: number;
}

/** Dispatches per `queue.submit` while the patch is installed (tfjs's default is 15). */
export const DEFAULT_SUBMIT_BATCH = 64;

const SUBMIT_FLAG = "WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE";
/** Where the patch keeps its state on a backend; shared by every copy of this module. */
const STATE_KEY = Symbol.for("regnet-vision.dispatchCache");

/** One uniform value of a tfjs program (`ProgramUniform` entries). */
interface UniformField {
  type: string;
  data: number[];
}

/** The parts of `WebGPUBackend` the patch reads and calls (tfjs keeps them private). */
interface BackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: { get(dataId: object): { resource: unknown } | undefined };
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  activeTimers: unknown;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getBufferData(buffer: GPUBuffer): Promise<ArrayBuffer | null>;
  bufferManager: BufferManagerInternals;
  runWebGPUProgram(
    program: ProgramLike,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: UniformField[],
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
  recordAndSubmit(
    program: ProgramLike,
    output: tf.TensorInfo,
    inputs: tf.TensorInfo[],
    uniforms?: UniformField[],
  ): void;
}

/** The parts of tfjs's `BufferManager` the patch reads and updates. */
interface BufferManagerInternals {
  freeBuffers: Map<string, GPUBuffer[]>;
  usedBuffers: Map<string, GPUBuffer[]>;
  numFreeBuffers: number;
  numUsedBuffers: number;
  numBytesUsed: number;
  acquireBuffer(
    size: number,
    usage: number,
    mappedAtCreation?: boolean,
    reuse?: boolean,
  ): GPUBuffer;
}

/** The fields of a tfjs `WebGPUProgram` the patch reads. */
interface ProgramLike {
  shaderKey?: string;
  pipeline: GPUComputePipeline | Promise<GPUComputePipeline>;
  pixelsOpType?: unknown;
  size?: boolean;
  outputShape: number[];
  outputComponent?: number;
  dispatch: [number, number, number];
}

type RecordFn = BackendInternals["recordAndSubmit"];
type SubmitFn = BackendInternals["submitQueue"];
type RunFn = BackendInternals["runWebGPUProgram"];
type AcquireFn = BufferManagerInternals["acquireBuffer"];

/** Everything the patch holds for one backend. */
interface PatchState {
  options: Required<DispatchCacheOptions>;
  stats: DispatchCacheStats;
  /** The own properties the backend had before install (undefined: none). */
  savedRecord: PropertyDescriptor | undefined;
  savedSubmit: PropertyDescriptor | undefined;
  savedRun: PropertyDescriptor | undefined;
  savedAcquire: PropertyDescriptor | undefined;
  /** The buffer manager patched (tfjs keeps one per backend). */
  bufferManager: BufferManagerInternals;
  /** The site of the program being run (`null` outside `runWebGPUProgram`). */
  site: string | null;
  /** Buffers acquired so far by the program being run. */
  siteOrdinal: number;
  /** The buffers each site got lately, most recent first. */
  sites: Map<string, GPUBuffer[]>;
  /** Programs run per signature since the last read back to the host. */
  occurrences: Map<string, number>;
  savedRead: PropertyDescriptor | undefined;
  /** The flag value before install, and the value set (to restore only what we set). */
  savedFlag: number | undefined;
  setFlag: number | undefined;
  ids: WeakMap<object, number>;
  nextId: number;
  layouts: WeakMap<GPUComputePipeline, GPUBindGroupLayout>;
  uniforms: Map<string, { buffer: GPUBuffer; id: number }>;
  bindGroups: Map<string, GPUBindGroup>;
  /** Uniform buffers dropped by a flush, destroyed after the next submit. */
  retired: GPUBuffer[];
  scratch: ArrayBuffer;
}

type PatchedBackend = BackendInternals & { [STATE_KEY]?: PatchState };

function webgpuBackend(backend?: WebGPUBackend): PatchedBackend | null {
  // The engine's registry, not `tf.findBackend`, which would start initialising the backend.
  const registry = (tf.engine() as unknown as { registry: Record<string, unknown> }).registry;
  const b = backend ?? (registry["webgpu"] as WebGPUBackend | undefined);
  if (!b || typeof (b as unknown as BackendInternals).recordAndSubmit !== "function") return null;
  return b as unknown as PatchedBackend;
}

function idOf(state: PatchState, obj: object): number {
  let id = state.ids.get(obj);
  if (id === undefined) {
    id = state.nextId++;
    state.ids.set(obj, id);
  }
  return id;
}

/** WGSL alignment of a uniform field of `n` 32-bit words, as tfjs's `makeUniforms` uses it. */
function alignmentOf(n: number): number {
  return n === 1 ? 4 : n === 2 ? 8 : 16;
}

/**
 * Writes the uniform block of a dispatch into `state.scratch` exactly as tfjs's `makeUniforms`
 * lays it out (fields aligned to 4/8/16 bytes, the field after a 5- or 6-vector to 16, the block
 * padded to its largest alignment, unused bytes zero), and returns its byte length, or -1 when a
 * field is longer than 6 words (the stock method rejects those; the caller falls back to it).
 */
function packUniforms(state: PatchState, fields: UniformField[]): number {
  let offset = 0;
  let pre = 0;
  let maxAlign = 1;
  const offsets: number[] = new Array(fields.length);
  for (let i = 0; i < fields.length; i++) {
    const n = fields[i].data.length === 0 ? 1 : fields[i].data.length;
    if (n > 6) return -1;
    let align = alignmentOf(n);
    if (pre === 5 || pre === 6) align = 16;
    if (align > maxAlign) maxAlign = align;
    offset = Math.ceil(offset / align) * align;
    offsets[i] = offset;
    pre = n;
    offset += n * 4;
  }
  const size = Math.ceil(offset / maxAlign) * maxAlign;
  if (state.scratch.byteLength < size) state.scratch = new ArrayBuffer(2 * size);
  const i32 = new Int32Array(state.scratch, 0, size / 4);
  const u32 = new Uint32Array(state.scratch, 0, size / 4);
  const f32 = new Float32Array(state.scratch, 0, size / 4);
  i32.fill(0);
  for (let i = 0; i < fields.length; i++) {
    const { type, data } = fields[i];
    const at = offsets[i] / 4;
    const view = type === "int32" ? i32 : type === "uint32" ? u32 : f32;
    if (data.length === 0) view[at] = 1; // makeUniforms turns an empty field into [1]
    else for (let k = 0; k < data.length; k++) view[at + k] = data[k];
  }
  return size;
}

/** The uniform fields tfjs prepends for a non-pixel program, then the program's own. */
function uniformFields(
  program: ProgramLike,
  output: tf.TensorInfo,
  inputs: tf.TensorInfo[],
  programUniforms: UniformField[] | undefined,
): UniformField[] {
  const fields: UniformField[] = [{ type: "float32", data: [NaN] }, {
    type: "float32",
    data: [Infinity],
  }];
  for (const t of inputs) {
    fields.push({ type: "int32", data: t.shape }, {
      type: "int32",
      data: tf.util.computeStrides(t.shape),
    });
  }
  fields.push({ type: "int32", data: output.shape }, {
    type: "int32",
    data: tf.util.computeStrides(output.shape),
  });
  if (program.size) {
    const size = tf.util.sizeFromShape(program.outputShape);
    fields.push({
      type: "int32",
      data: [program.outputComponent ? size / program.outputComponent : size],
    });
  }
  return programUniforms ? fields.concat(programUniforms) : fields;
}

/** Drops both caches; their uniform buffers are destroyed after the next submit. */
function flush(state: PatchState): void {
  // A buffer a live recording replays is kept (dropped from the cache, not destroyed).
  for (const u of state.uniforms.values()) {
    if (!pinnedUniforms.has(u.buffer)) state.retired.push(u.buffer);
  }
  state.uniforms.clear();
  state.bindGroups.clear();
  state.stats.flushes++;
}

function makeRecord(stock: RecordFn, state: PatchState): RecordFn {
  return function (this: BackendInternals, program, output, inputs, programUniforms) {
    const pipeline = program.pipeline;
    if (
      pipeline instanceof Promise || this.activeTimers != null || program.pixelsOpType != null
    ) {
      state.stats.fallbacks++;
      recorder.current?.unsupported(`${program.shaderKey}: stock dispatch path`);
      return stock.call(this, program, output, inputs, programUniforms);
    }
    const outBuf = this.tensorMap.get(output.dataId)?.resource;
    if (!(outBuf instanceof GPUBuffer)) {
      state.stats.fallbacks++;
      recorder.current?.unsupported(`${program.shaderKey}: output is not a buffer`);
      return stock.call(this, program, output, inputs, programUniforms);
    }
    const inBufs: GPUBuffer[] = new Array(inputs.length);
    for (let i = 0; i < inputs.length; i++) {
      const r = this.tensorMap.get(inputs[i].dataId)?.resource;
      if (!(r instanceof GPUBuffer)) {
        state.stats.fallbacks++;
        recorder.current?.unsupported(`${program.shaderKey}: input is not a buffer`);
        return stock.call(this, program, output, inputs, programUniforms);
      }
      inBufs[i] = r;
    }
    const size = packUniforms(state, uniformFields(program, output, inputs, programUniforms));
    if (size < 0) {
      state.stats.fallbacks++;
      recorder.current?.unsupported(`${program.shaderKey}: uniform field too long`);
      return stock.call(this, program, output, inputs, programUniforms);
    }
    const { options, stats } = state;

    // The uniform buffer holding exactly these bytes (written once, never rewritten).
    const words = new Uint16Array(state.scratch, 0, size / 2);
    const uniformKey = String.fromCharCode.apply(null, words as unknown as number[]);
    let uniform = state.uniforms.get(uniformKey);
    if (uniform === undefined) {
      if (state.uniforms.size >= options.maxUniformBuffers) flush(state);
      const buffer = this.device.createBuffer({
        size,
        usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM,
      });
      this.queue.writeBuffer(buffer, 0, state.scratch, 0, size);
      uniform = { buffer, id: idOf(state, buffer) };
      state.uniforms.set(uniformKey, uniform);
      stats.uniformMisses++;
    } else {
      stats.uniformHits++;
    }

    // The bind group of (pipeline, output, inputs, uniforms).
    let key = `${idOf(state, pipeline)}:${idOf(state, outBuf)}`;
    for (const b of inBufs) key += `,${idOf(state, b)}`;
    key += `:${uniform.id}`;
    let bindGroup = state.bindGroups.get(key);
    if (bindGroup === undefined) {
      if (state.bindGroups.size >= options.maxBindGroups) state.bindGroups.clear();
      let layout = state.layouts.get(pipeline);
      if (layout === undefined) {
        layout = pipeline.getBindGroupLayout(0);
        state.layouts.set(pipeline, layout);
      }
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: outBuf } }];
      for (let i = 0; i < inBufs.length; i++) {
        entries.push({ binding: i + 1, resource: { buffer: inBufs[i] } });
      }
      entries.push({ binding: inBufs.length + 1, resource: { buffer: uniform.buffer } });
      bindGroup = this.device.createBindGroup({ layout, entries });
      state.bindGroups.set(key, bindGroup);
      stats.bindGroupMisses++;
    } else {
      stats.bindGroupHits++;
    }

    // What the stock method does from here on, minus timing (handled by the stock path).
    for (const t of inputs) this.commandQueueOwnedIds.add(t.dataId);
    this.commandQueueOwnedIds.add(output.dataId);
    this.ensureCommandEncoderReady();
    if (!this.computePassEncoder) {
      this.computePassEncoder = this.commandEncoder!.beginComputePass({});
    }
    const pass = this.computePassEncoder;
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(program.dispatch[0], program.dispatch[1], program.dispatch[2]);
    recorder.current?.dispatch(
      pipeline,
      bindGroup,
      program.dispatch,
      [outBuf, ...inBufs],
      uniform.buffer,
    );
    this.dispatchCountInPass++;
    stats.dispatches++;
    if ((tf.env().get(SUBMIT_FLAG) as number) <= this.dispatchCountInPass) {
      this.endComputePassEncoder();
      this.submitQueue();
    }
  };
}

function makeSubmit(stock: SubmitFn, state: PatchState): SubmitFn {
  return function (this: BackendInternals) {
    stock.call(this);
    if (state.retired.length > 0) {
      for (const b of state.retired) b.destroy();
      state.retired = [];
    }
  };
}

/** How many buffers a site remembers. */
const SITE_MEMORY = 4;

/**
 * Wraps `runWebGPUProgram` to name the program's site while it runs: its shader family, output
 * shape, dtype and input count, and how many programs of that signature ran since the last read
 * back to the host. A training loop reads the loss once a step, so a step's sites are the same
 * every step whatever buffers its tensors had.
 */
function makeRun(stock: RunFn, state: PatchState): RunFn {
  return function (this: BackendInternals, program, inputs, outputDtype, uniforms, output) {
    const signature = `${program.shaderKey}|${program.outputShape}|${outputDtype}|${inputs.length}`;
    const n = state.occurrences.get(signature) ?? 0;
    state.occurrences.set(signature, n + 1);
    const site = `${signature}@${n}`;
    const outer = state.site, outerOrdinal = state.siteOrdinal;
    state.site = site;
    state.siteOrdinal = 0;
    try {
      return stock.call(this, program, inputs, outputDtype, uniforms, output);
    } finally {
      state.site = outer;
      state.siteOrdinal = outerOrdinal;
    }
  };
}

/**
 * Wraps the buffer manager's `acquireBuffer`: inside a program's run, a reusable buffer is taken
 * from the free list by preference when the same site (and the same ordinal within it) had it
 * before; otherwise the stock choice (the last one freed). The bookkeeping is the stock one.
 */
function makeAcquire(stock: AcquireFn, state: PatchState): AcquireFn {
  return function (
    this: BufferManagerInternals,
    size,
    usage,
    mappedAtCreation = false,
    reuse = true,
  ) {
    if (state.site === null || !reuse) {
      return stock.call(this, size, usage, mappedAtCreation, reuse);
    }
    const site = `${state.site}#${state.siteOrdinal++}`;
    let recent = state.sites.get(site);
    const free = this.freeBuffers.get(`${size}_${usage}`);
    if (recent !== undefined && free !== undefined && free.length > 0) {
      for (let i = 0; i < recent.length; i++) {
        const at = free.lastIndexOf(recent[i]);
        if (at < 0) continue;
        const buffer = recent[i];
        free.splice(at, 1);
        this.numFreeBuffers--;
        const key = `${size}_${usage}`;
        let used = this.usedBuffers.get(key);
        if (used === undefined) this.usedBuffers.set(key, used = []);
        used.push(buffer);
        this.numUsedBuffers++;
        this.numBytesUsed += size;
        if (i > 0) recent.unshift(recent.splice(i, 1)[0]);
        state.stats.affinityHits++;
        return buffer;
      }
    }
    const buffer = stock.call(this, size, usage, mappedAtCreation, reuse);
    state.stats.affinityMisses++;
    if (recent === undefined) {
      if (state.sites.size >= state.options.maxSites) state.sites.clear();
      state.sites.set(site, recent = []);
    }
    recent.unshift(buffer);
    if (recent.length > SITE_MEMORY) recent.pop();
    return buffer;
  };
}

function emptyStats(): DispatchCacheStats {
  return {
    dispatches: 0,
    fallbacks: 0,
    bindGroupHits: 0,
    bindGroupMisses: 0,
    uniformHits: 0,
    uniformMisses: 0,
    flushes: 0,
    affinityHits: 0,
    affinityMisses: 0,
  };
}

/**
 * Patches the webgpu backend's dispatch path (see the module doc). Idempotent: a second call
 * on a patched backend changes nothing and returns true.
 *
 * @param options submit batch and cache bounds
 * @param backend the backend to patch; tfjs's `webgpu` backend instance when absent
 * @returns true when the backend is patched, false when there is no webgpu backend
 * @example
 * ```ts
 * import { installDispatchCache, uninstallDispatchCache } from "./dispatch.ts";
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
  const submitBatch = options.submitBatch === undefined
    ? DEFAULT_SUBMIT_BATCH
    : options.submitBatch;
  if (submitBatch !== null && !(Number.isInteger(submitBatch) && submitBatch >= 1)) {
    throw new RangeError(`submitBatch must be a positive integer or null, got ${submitBatch}`);
  }
  const state: PatchState = {
    options: {
      submitBatch,
      maxBindGroups: options.maxBindGroups ?? 16384,
      maxUniformBuffers: options.maxUniformBuffers ?? 8192,
      bufferAffinity: options.bufferAffinity ?? true,
      maxSites: options.maxSites ?? 32768,
    },
    stats: emptyStats(),
    savedRecord: Object.getOwnPropertyDescriptor(be, "recordAndSubmit"),
    savedSubmit: Object.getOwnPropertyDescriptor(be, "submitQueue"),
    savedRun: Object.getOwnPropertyDescriptor(be, "runWebGPUProgram"),
    savedAcquire: Object.getOwnPropertyDescriptor(be.bufferManager, "acquireBuffer"),
    bufferManager: be.bufferManager,
    site: null,
    siteOrdinal: 0,
    sites: new Map(),
    occurrences: new Map(),
    savedRead: Object.getOwnPropertyDescriptor(be, "getBufferData"),
    savedFlag: undefined,
    setFlag: undefined,
    ids: new WeakMap(),
    nextId: 1,
    layouts: new WeakMap(),
    uniforms: new Map(),
    bindGroups: new Map(),
    retired: [],
    scratch: new ArrayBuffer(1024),
  };
  be.recordAndSubmit = makeRecord(be.recordAndSubmit, state);
  be.submitQueue = makeSubmit(be.submitQueue, state);
  if (state.options.bufferAffinity) {
    be.runWebGPUProgram = makeRun(be.runWebGPUProgram, state);
    const bm = be.bufferManager;
    bm.acquireBuffer = makeAcquire(bm.acquireBuffer, state);
    const read = be.getBufferData;
    be.getBufferData = function (this: BackendInternals, buffer: GPUBuffer) {
      state.occurrences.clear(); // a read back to the host: the next step starts
      return read.call(this, buffer);
    };
  }
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
 * import { uninstallDispatchCache } from "./dispatch.ts";
 * console.log(uninstallDispatchCache()); // false: nothing was installed
 * ```
 */
export function uninstallDispatchCache(backend?: WebGPUBackend): boolean {
  const be = webgpuBackend(backend);
  const state = be?.[STATE_KEY];
  if (!be || !state) return false;
  // Recorded commands may use cached bind groups and uniform buffers: submit them first.
  if (be.commandEncoder) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
  flush(state);
  for (const b of state.retired) b.destroy();
  state.retired = [];
  const restore = (obj: object, name: string, saved?: PropertyDescriptor) => {
    if (saved) Object.defineProperty(obj, name, saved);
    else delete (obj as Record<string, unknown>)[name];
  };
  restore(be, "recordAndSubmit", state.savedRecord);
  restore(be, "submitQueue", state.savedSubmit);
  if (state.options.bufferAffinity) {
    restore(be, "runWebGPUProgram", state.savedRun);
    restore(state.bufferManager, "acquireBuffer", state.savedAcquire);
    restore(be, "getBufferData", state.savedRead);
  }
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
 * import { dispatchCacheInstalled } from "./dispatch.ts";
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
 * @returns dispatches, fallbacks, cache hits and misses, flushes
 * @example
 * ```ts
 * import { dispatchCacheStats } from "./dispatch.ts";
 * console.log(dispatchCacheStats()); // null when not installed
 * ```
 */
export function dispatchCacheStats(backend?: WebGPUBackend): DispatchCacheStats | null {
  const state = webgpuBackend(backend)?.[STATE_KEY];
  return state ? { ...state.stats } : null;
}

/**
 * Zeroes the counters of {@link dispatchCacheStats}; the caches stay.
 *
 * @param backend a backend; tfjs's `webgpu` backend instance when absent
 * @example
 * ```ts
 * import { resetDispatchCacheStats } from "./dispatch.ts";
 * resetDispatchCacheStats();
 * ```
 */
export function resetDispatchCacheStats(backend?: WebGPUBackend): void {
  const state = webgpuBackend(backend)?.[STATE_KEY];
  if (state) state.stats = emptyStats();
}
