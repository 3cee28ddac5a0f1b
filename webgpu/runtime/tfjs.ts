/**
 * The one place that touches tfjs-backend-webgpu 4.22's private internals. Every other file of
 * `webgpu/` reaches the backend's command encoder, tensor map, buffer manager and uniform layout
 * through the typed accessors here, so upgrading tfjs means auditing this file:
 * {@link assertTfjsInternals} (called by `installWebGpu`) checks the tfjs version and the
 * presence of every member the runtime uses, and fails with one error that names what is missing.
 *
 * @module
 */
import { tf, WebGPUBackend } from "../../deps.ts";
import { listen, ORDER } from "./patches.ts";

/** The tfjs version whose internals this file describes. */
export const TFJS_VERSION = "4.22.0";

/** The flag tfjs reads to submit its command encoder every so many dispatches. */
export const SUBMIT_FLAG = "WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE";

/** A tfjs WebGPU program (`webgpu_program.WebGPUProgram`). */
export type WebGPUProgram = Parameters<WebGPUBackend["runWebGPUProgram"]>[0];
/** The program-defined uniforms `runWebGPUProgram` takes. */
export type ProgramUniforms = NonNullable<Parameters<WebGPUBackend["runWebGPUProgram"]>[3]>;

/** One uniform value of a tfjs program (`ProgramUniform` entries). */
export interface UniformField {
  type: string;
  data: number[];
}

/** The fields of a tfjs `WebGPUProgram` the runtime reads. */
export interface ProgramLike {
  shaderKey?: string;
  pipeline: GPUComputePipeline | Promise<GPUComputePipeline>;
  pixelsOpType?: unknown;
  size?: boolean;
  outputShape: number[];
  outputComponent?: number;
  dispatch: [number, number, number];
}

/** What tfjs keeps per tensor data id. */
export interface TensorData {
  resource: unknown;
  values: unknown;
  refCount: number;
  dtype: string;
}

/** The parts of tfjs's `BufferManager` the runtime reads, updates and wraps. */
export interface BufferManagerInternals {
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
  releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
}

/** The parts of `WebGPUBackend` the runtime reads, calls and wraps (tfjs keeps them private). */
export interface BackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  adapterInfo?: GPUAdapterInfo;
  tensorMap: { get(dataId: object): TensorData | undefined };
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  activeTimers: unknown;
  bufferManager: BufferManagerInternals;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  uploadToGPU(dataId: object): void;
  getBufferData(buffer: GPUBuffer): Promise<ArrayBuffer | null>;
  readSync(dataId: object): unknown;
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
  makeUniforms(fields: UniformField[]): unknown;
}

/**
 * The names of the methods the runtime wraps (`patches.ts`), by role: one tfjs program, the
 * recording of its dispatch, the submit of the command encoder, the layout and write of a
 * program's uniform buffer, a read back to the host, `dataSync()`/`arraySync()`, and a buffer
 * from and back to the pool.
 */
export const METHODS = {
  run: "runWebGPUProgram",
  record: "recordAndSubmit",
  submit: "submitQueue",
  uniforms: "makeUniforms",
  read: "getBufferData",
  readSync: "readSync",
  acquire: "acquireBuffer",
  release: "releaseBuffer",
} as const satisfies Record<
  string,
  keyof BackendInternals | keyof BufferManagerInternals
>;

/**
 * The members of {@link BackendInternals} and {@link BufferManagerInternals}, by object: methods
 * (`()`) and fields (`?`: tfjs may set it lazily).
 */
const MEMBERS: Record<string, string> = {
  WebGPUBackend: "device queue adapterInfo? tensorMap commandEncoder? computePassEncoder? " +
    "commandQueueOwnedIds dispatchCountInPass activeTimers? bufferManager " +
    "ensureCommandEncoderReady() endComputePassEncoder() submitQueue() uploadToGPU() " +
    "getBufferData() readSync() runWebGPUProgram() recordAndSubmit() makeUniforms()",
  BufferManager: "freeBuffers usedBuffers numFreeBuffers numUsedBuffers numBytesUsed " +
    "acquireBuffer() releaseBuffer()",
};

/**
 * Checks that the running tfjs is the version this file describes and that the backend has
 * every member the runtime uses; throws one error naming what differs.
 *
 * @param backend the webgpu backend
 * @throws Error naming the version found and the members missing
 */
export function assertTfjsInternals(backend: WebGPUBackend): void {
  const problems: string[] = [];
  const version = (tf.version as Record<string, string>)["tfjs-core"];
  if (version !== TFJS_VERSION) problems.push(`tfjs-core ${version} (expected ${TFJS_VERSION})`);
  const objects: Record<string, unknown> = {
    WebGPUBackend: backend,
    BufferManager: (backend as unknown as { bufferManager?: unknown }).bufferManager,
  };
  for (const [where, members] of Object.entries(MEMBERS)) {
    for (const member of members.split(" ")) {
      const name = member.replace(/\?|\(\)/, "");
      const v = (objects[where] as Record<string, unknown> | null)?.[name];
      const ok = member.endsWith("()")
        ? typeof v === "function"
        : member.endsWith("?") || v !== undefined;
      if (!ok) problems.push(`${where}.${name}`);
    }
  }
  if (problems.length > 0) {
    throw new Error(
      `webgpu/runtime/tfjs.ts describes tfjs ${TFJS_VERSION}'s webgpu internals; this tfjs ` +
        `differs: ${problems.join(", ")}`,
    );
  }
}

/** The backend's private members, typed (the same object). */
export function internals(backend: WebGPUBackend): BackendInternals {
  return backend as unknown as BackendInternals;
}

/** The parts of tfjs's engine read here (private in tfjs). */
interface EngineInternals {
  registry: Record<string, unknown>;
  registryFactory: Record<string, unknown>;
}

/**
 * Replaces tfjs's `webgpu` backend factory, while no webgpu backend exists yet, with one that
 * makes the device tfjs 4.22's factory makes (same features and limits) but with up to
 * `storageBindings` storage buffers per shader stage where the adapter allows. A backend made
 * earlier is left as it is.
 */
export function registerWebGpuFactory(storageBindings: number): void {
  const engine = tf.engine() as unknown as EngineInternals;
  if (engine.registry["webgpu"] !== undefined || !("webgpu" in engine.registryFactory)) return;
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", async () => {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new Error("no WebGPU adapter");
    const features: GPUFeatureName[] = [];
    for (const f of ["timestamp-query", "bgra8unorm-storage"] as GPUFeatureName[]) {
      if (adapter.features.has(f)) features.push(f);
    }
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits: {
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxStorageBuffersPerShaderStage: Math.min(
          l.maxStorageBuffersPerShaderStage,
          storageBindings,
        ),
      },
    });
    return new WebGPUBackend(device, adapter.info);
  }, 3);
}

const EXPLAINED = Symbol.for("regnet-vision.explainedSyncReads");

/**
 * tfjs's webgpu backend reads a GPU tensor synchronously (`dataSync`, `arraySync`) by drawing
 * it into a 2D canvas; Deno has no 2D canvas and there is no synchronous buffer read in WebGPU,
 * so it crashed inside tfjs (`Cannot read properties of null (reading 'clearRect')`). Where no
 * 2D canvas exists, such a read throws `message` instead (a listener on `readSync`, installed
 * once per backend); tensors whose values are on the CPU (read before, or never uploaded) still
 * read synchronously.
 */
export function explainSyncReads(backend: WebGPUBackend, message: string): void {
  if (typeof OffscreenCanvas !== "undefined" && new OffscreenCanvas(1, 1).getContext("2d")) return;
  const be = internals(backend) as BackendInternals & { [EXPLAINED]?: boolean };
  if (be[EXPLAINED]) return;
  be[EXPLAINED] = true;
  listen(be, METHODS.readSync, ORDER.explain, (self, args, next) => {
    const data = (self as BackendInternals).tensorMap.get(args[0] as object);
    if (data && data.values == null && !["string", "complex64"].includes(data.dtype)) {
      throw new Error(message);
    }
    return next(args);
  });
}

/**
 * Silences tfjs's cpu backend's advice to install tfjs-node (a native Node.js addon), printed on
 * its first write when it sees Node.js APIs: Deno has them but cannot use that addon. Sets the
 * backend's private `firstUse`.
 */
export function quietCpuBackend(backend: tf.KernelBackend): void {
  (backend as unknown as { firstUse?: boolean }).firstUse = false;
}

/** The initialised `webgpu` backend, or `null` (the engine's registry: no initialisation). */
export function registeredWebGpuBackend(): WebGPUBackend | null {
  const registry = (tf.engine() as unknown as Partial<EngineInternals>).registry;
  const b = registry?.["webgpu"] as WebGPUBackend | undefined;
  if (!b || typeof (b as unknown as BackendInternals).recordAndSubmit !== "function") return null;
  return b;
}

/** The adapter information the backend keeps, if any. */
export function adapterInfoOf(
  backend: WebGPUBackend,
): (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined {
  return (backend as unknown as { device?: { adapterInfo?: GPUAdapterInfo } }).device
    ?.adapterInfo as (GPUAdapterInfo & { isFallbackAdapter?: boolean }) | undefined;
}

// Accessors of the backend's tensor map, command encoder and buffer pool (`be`: its internals).

/** The GPU buffer of a tensor, uploading it first when its values are still on the CPU. */
export function bufferOf(be: BackendInternals, t: tf.TensorInfo): GPUBuffer {
  be.uploadToGPU(t.dataId);
  const resource = be.tensorMap.get(t.dataId)?.resource;
  if (!(resource instanceof GPUBuffer)) {
    throw new Error(`webgpu runtime: tensor of shape [${t.shape}] has no GPU buffer`);
  }
  return resource;
}

/** The buffer a tensor has now, without uploading (`undefined` when its data is not a buffer). */
export function currentBufferOf(be: BackendInternals, t: tf.TensorInfo): GPUBuffer | undefined {
  const r = be.tensorMap.get(t.dataId)?.resource;
  return r instanceof GPUBuffer ? r : undefined;
}

/** Drops the CPU copy tfjs keeps of a tensor read back (stale once the GPU writes the buffer). */
export function forgetValues(be: BackendInternals, t: tf.TensorInfo): void {
  const data = be.tensorMap.get(t.dataId);
  if (data && data.resource instanceof GPUBuffer) data.values = null;
}

/** How many tfjs tensors share a tensor's data (0 when tfjs has no record of it). */
export function refCountOf(be: BackendInternals, t: tf.TensorInfo): number {
  return be.tensorMap.get(t.dataId)?.refCount ?? 0;
}

/** Keeps a recorded command's tensors alive until the next submit, as tfjs does for its own. */
export function holdUntilSubmit(be: BackendInternals, tensors: readonly tf.TensorInfo[]): void {
  for (const t of tensors) be.commandQueueOwnedIds.add(t.dataId);
}

/** Encodes one dispatch in the backend's current compute pass (opening one when needed). */
export function encodeDispatch(
  be: BackendInternals,
  pipeline: GPUComputePipeline,
  bindGroup: GPUBindGroup,
  workgroups: readonly number[],
): void {
  be.ensureCommandEncoderReady();
  if (!be.computePassEncoder) be.computePassEncoder = be.commandEncoder!.beginComputePass({});
  const pass = be.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
}

/** Counts a dispatch in the pass as tfjs does; submits at {@link SUBMIT_FLAG} dispatches. */
export function countInPass(be: BackendInternals): void {
  be.dispatchCountInPass++;
  if ((tf.env().get(SUBMIT_FLAG) as number) <= be.dispatchCountInPass) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
}

/** Whether a profiler (`tf.profile`, `tf.time`) is timing kernels now. */
export function timersActive(be: BackendInternals): boolean {
  return be.activeTimers != null;
}

/** Encodes a copy of `size` bytes from `src` to `dst` (outside any compute pass). */
export function encodeCopy(be: BackendInternals, src: GPUBuffer, dst: GPUBuffer, size: number) {
  be.ensureCommandEncoderReady();
  be.endComputePassEncoder();
  be.commandEncoder!.copyBufferToBuffer(src, 0, dst, 0, size);
}

/** Submits what is recorded, if anything. */
export function flushCommands(be: BackendInternals): void {
  if (be.commandEncoder) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
}

/** The key of tfjs's buffer pool lists (and of a capture's parked buffers): size and usage. */
export function poolKey(size: number, usage: number): string {
  return `${size}_${usage}`;
}

/**
 * Hands out one particular free buffer of tfjs's pool, with the bookkeeping of tfjs's
 * `acquireBuffer` (free list, used list, counts, bytes in use); false when `buffer` is not free
 * for that size and usage.
 */
export function takeFreeBuffer(
  bm: BufferManagerInternals,
  size: number,
  usage: number,
  buffer: GPUBuffer,
): boolean {
  const key = poolKey(size, usage);
  const free = bm.freeBuffers.get(key);
  const at = free === undefined ? -1 : free.lastIndexOf(buffer);
  if (at < 0) return false;
  free!.splice(at, 1);
  bm.numFreeBuffers--;
  let used = bm.usedBuffers.get(key);
  if (used === undefined) bm.usedBuffers.set(key, used = []);
  used.push(buffer);
  bm.numUsedBuffers++;
  bm.numBytesUsed += size;
  return true;
}

/** Whether tfjs's pool has a free buffer of that size and usage. */
export function hasFreeBuffer(bm: BufferManagerInternals, size: number, usage: number): boolean {
  return (bm.freeBuffers.get(poolKey(size, usage))?.length ?? 0) > 0;
}

/** WGSL alignment of a uniform field of `n` 32-bit words, as tfjs's `makeUniforms` uses it. */
function alignmentOf(n: number): number {
  return n === 1 ? 4 : n === 2 ? 8 : 16;
}

/**
 * The uniform fields tfjs's `runWebGPUProgram` prepends for a non-pixel program (NaN, Infinity,
 * each input's shape and strides, the output's, the size when `program.size`), then the
 * program's own (`programUniforms`).
 */
export function uniformFields(
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

/**
 * Writes a uniform block into `scratch.buffer` exactly as tfjs's `makeUniforms` lays it out
 * (fields aligned to 4/8/16 bytes, the field after a 5- or 6-vector to 16, the block padded to
 * its largest alignment, unused bytes zero), growing it when too small.
 *
 * @param scratch holder of the bytes (replaced by a larger buffer when needed)
 * @param fields the uniform fields
 * @returns the block's byte length, or -1 when a field is longer than 6 words (tfjs's stock
 *   method rejects those)
 */
export function packUniforms(scratch: { buffer: ArrayBuffer }, fields: UniformField[]): number {
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
  if (scratch.buffer.byteLength < size) scratch.buffer = new ArrayBuffer(2 * size);
  const i32 = new Int32Array(scratch.buffer, 0, size / 4);
  const u32 = new Uint32Array(scratch.buffer, 0, size / 4);
  const f32 = new Float32Array(scratch.buffer, 0, size / 4);
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
