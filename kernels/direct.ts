/**
 * Direct dispatches: compute shaders this toolkit writes whole (bindings included) and records
 * into the webgpu backend's own command stream, in order with tfjs's programs.
 *
 * tfjs's `runWebGPUProgram` binds one writable output and read-only inputs, and every program
 * makes a new output tensor. Two things need more: writing several outputs in one dispatch
 * (a BatchNorm merge that yields a mean and a variance), and updating tensors in place (the SGD
 * update of every parameter and momentum buffer, the BatchNorm running averages), which
 * `torch.optim.SGD` and `nn.BatchNorm2d` also do, and which keeps a step's buffers the same from
 * step to step. A direct dispatch binds any mix of read-only and read-write tensor buffers and
 * one uniform buffer, uses the backend's current compute pass (so it runs after every tfjs
 * program recorded before it and before every one recorded after), and counts in
 * {@link directDispatchStats} and in `countDispatches`.
 *
 * Tensors written in place must be owned (one tfjs tensor on the data; see
 * {@link ownForWrite}); their CPU copy, which tfjs keeps after a read, is dropped, so the
 * next read sees the new values.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../deps.ts";
import { directDispatchStats } from "./counters.ts";
import { recorder } from "./recorder.ts";

export { directDispatchStats };

/** How a direct dispatch binds a tensor. */
export type Access = "read" | "read_write";

/** One tensor binding of a direct dispatch, at the binding index of its position. */
export interface DirectBinding {
  /** The tensor whose buffer is bound. */
  tensor: tf.TensorInfo;
  /** Read-only or read-write storage. */
  access: Access;
}

/** A direct dispatch. */
export interface DirectDispatch {
  /**
   * Cache key of the pipeline: the same key must always come with the same WGSL and the same
   * binding accesses.
   */
  key: string;
  /**
   * The whole WGSL module: tensor bindings `@group(0) @binding(i)` in the order of `bindings`,
   * then (when `uniforms` is given) a uniform buffer at `@binding(bindings.length)`, and a
   * `@compute` entry point named `main`. Called only when the pipeline is not yet cached.
   */
  code: () => string;
  /** The tensors bound. */
  bindings: DirectBinding[];
  /** Bytes of the uniform buffer (a multiple of 16), when the shader has one. */
  uniforms?: ArrayBuffer;
  /** Workgroups per dimension. */
  workgroups: [number, number, number];
}

/** The parts of `WebGPUBackend` a direct dispatch uses (tfjs keeps them private). */
interface Internals {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: {
    get(dataId: object): { resource: unknown; values: unknown; refCount: number } | undefined;
  };
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  uploadToGPU(dataId: object): void;
}

/** Per-device caches. */
interface Caches {
  layouts: Map<string, { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>;
  pipelines: Map<string, GPUComputePipeline>;
  uniforms: Map<string, GPUBuffer>;
  bindGroups: Map<string, GPUBindGroup>;
  ids: WeakMap<object, number>;
  nextId: number;
}

const MAX_UNIFORMS = 4096;
const MAX_BIND_GROUPS = 8192;
const cachesByDevice = new WeakMap<GPUDevice, Caches>();

function cachesOf(device: GPUDevice): Caches {
  let c = cachesByDevice.get(device);
  if (!c) {
    c = {
      layouts: new Map(),
      pipelines: new Map(),
      uniforms: new Map(),
      bindGroups: new Map(),
      ids: new WeakMap(),
      nextId: 1,
    };
    cachesByDevice.set(device, c);
  }
  return c;
}

function idOf(c: Caches, obj: object): number {
  let id = c.ids.get(obj);
  if (id === undefined) c.ids.set(obj, id = c.nextId++);
  return id;
}

/** Largest number of workgroups in one dimension that every WebGPU device allows. */
const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * A 1-D range of `invocations` in workgroups of `workgroupSize`, as a grid WebGPU accepts (a
 * second dimension beyond 65,535 workgroups). Shaders number it with {@link flatMain}.
 *
 * @param invocations invocations wanted (at least one workgroup is dispatched)
 * @param workgroupSize invocations per workgroup
 * @returns workgroups per dimension
 */
export function flatGrid(invocations: number, workgroupSize = 64): [number, number, number] {
  const groups = Math.max(1, Math.ceil(invocations / workgroupSize));
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [groups, 1, 1];
  return [MAX_WORKGROUPS_PER_DIM, Math.ceil(groups / MAX_WORKGROUPS_PER_DIM), 1];
}

/**
 * WGSL: the head of a `main` entry point over a {@link flatGrid} grid, up to its opening brace,
 * defining `wg` (the flat workgroup index, u32), `lid` (the index within it) and `index` (the
 * flat invocation index, i32). Invocations past the range wanted are the shader's to skip.
 *
 * @param workgroupSize invocations per workgroup
 * @returns the WGSL
 */
export function flatMain(workgroupSize = 64): string {
  return `@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>,
    @builtin(local_invocation_index) lid : u32) {
  let wg = wid.y * nwg.x + wid.x;
  let index = i32(wg * ${workgroupSize}u + lid);`;
}

/**
 * The most storage buffers one direct dispatch may bind on this backend's device (its
 * `maxStorageBuffersPerShaderStage`; 8 unless the device was created with more).
 *
 * @param backend the webgpu backend
 * @returns the limit
 */
export function maxStorageBindings(backend: WebGPUBackend): number {
  return (backend as unknown as Internals).device.limits.maxStorageBuffersPerShaderStage;
}

/** The GPU buffer of a tensor, uploading it first when its values are still on the CPU. */
function bufferOf(be: Internals, t: tf.TensorInfo): GPUBuffer {
  be.uploadToGPU(t.dataId);
  const resource = be.tensorMap.get(t.dataId)?.resource;
  if (!(resource instanceof GPUBuffer)) {
    throw new Error(`direct dispatch: tensor of shape [${t.shape}] has no GPU buffer`);
  }
  return resource;
}

function layoutFor(be: Internals, c: Caches, accesses: Access[], uniform: boolean) {
  const key = accesses.map((a) => (a === "read" ? "r" : "w")).join("") + (uniform ? "u" : "");
  let layout = c.layouts.get(key);
  if (!layout) {
    const entries: GPUBindGroupLayoutEntry[] = accesses.map((a, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: a === "read" ? "read-only-storage" : "storage" },
    }));
    if (uniform) {
      entries.push({
        binding: accesses.length,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform" },
      });
    }
    const group = be.device.createBindGroupLayout({ entries });
    layout = { group, pipeline: be.device.createPipelineLayout({ bindGroupLayouts: [group] }) };
    c.layouts.set(key, layout);
  }
  return layout;
}

function uniformBuffer(be: Internals, c: Caches, bytes: ArrayBuffer): GPUBuffer {
  if (bytes.byteLength % 16 !== 0) {
    throw new Error(`direct dispatch: uniform block of ${bytes.byteLength} bytes (need 16k)`);
  }
  const key = String.fromCharCode.apply(null, new Uint16Array(bytes) as unknown as number[]);
  let buffer = c.uniforms.get(key);
  if (!buffer) {
    // Dropped buffers are left to the garbage collector: a recorded command may still use one.
    if (c.uniforms.size >= MAX_UNIFORMS) c.uniforms.clear();
    buffer = be.device.createBuffer({
      size: bytes.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    be.queue.writeBuffer(buffer, 0, bytes);
    c.uniforms.set(key, buffer);
  }
  return buffer;
}

/**
 * Records one direct dispatch into the backend's command stream (see the module doc). A buffer
 * may appear only once among the bindings when any binding of it is read-write (WebGPU forbids
 * reading and writing one buffer in one dispatch).
 *
 * @param backend the webgpu backend
 * @param d the dispatch
 * @example
 * ```ts ignore
 * runDirect(backend, { key: "scale2", code: () => WGSL, bindings: [{ tensor: x, access: "read_write" }],
 *   workgroups: [Math.ceil(n / 64), 1, 1] });
 * ```
 */
export function runDirect(backend: WebGPUBackend, d: DirectDispatch): void {
  const be = backend as unknown as Internals;
  const c = cachesOf(be.device);
  const accesses = d.bindings.map((b) => b.access);
  const buffers = d.bindings.map((b) => bufferOf(be, b.tensor));
  for (let i = 0; i < buffers.length; i++) {
    if (accesses[i] !== "read_write") continue;
    if (buffers.indexOf(buffers[i]) !== i || buffers.lastIndexOf(buffers[i]) !== i) {
      throw new Error(`direct dispatch ${d.key}: binding ${i} is written and bound twice`);
    }
    // tfjs keeps a CPU copy of what it read back; after this write it would be stale.
    be.tensorMap.get(d.bindings[i].tensor.dataId)!.values = null;
  }
  const layout = layoutFor(be, c, accesses, d.uniforms !== undefined);
  let pipeline = c.pipelines.get(d.key);
  if (!pipeline) {
    const module = be.device.createShaderModule({ code: d.code(), label: d.key });
    pipeline = be.device.createComputePipeline({
      layout: layout.pipeline,
      compute: { module, entryPoint: "main" },
      label: d.key,
    });
    c.pipelines.set(d.key, pipeline);
  }
  const uniform = d.uniforms ? uniformBuffer(be, c, d.uniforms) : null;
  let key = `${idOf(c, pipeline)}:`;
  for (const b of buffers) key += `${idOf(c, b)},`;
  if (uniform) key += `u${idOf(c, uniform)}`;
  let bindGroup = c.bindGroups.get(key);
  if (!bindGroup) {
    if (c.bindGroups.size >= MAX_BIND_GROUPS) c.bindGroups.clear();
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({
      binding: i,
      resource: { buffer },
    }));
    if (uniform) entries.push({ binding: buffers.length, resource: { buffer: uniform } });
    bindGroup = be.device.createBindGroup({ layout: layout.group, entries });
    c.bindGroups.set(key, bindGroup);
    directDispatchStats.bindGroups++;
  }
  // As the backend records its own programs: the tensors stay alive until the next submit.
  for (const b of d.bindings) be.commandQueueOwnedIds.add(b.tensor.dataId);
  be.ensureCommandEncoderReady();
  if (!be.computePassEncoder) be.computePassEncoder = be.commandEncoder!.beginComputePass({});
  const pass = be.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  recorder.current?.dispatch(pipeline, bindGroup, d.workgroups, buffers, uniform);
  be.dispatchCountInPass++;
  directDispatchStats.dispatches++;
  if ((tf.env().get("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE") as number) <= be.dispatchCountInPass) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
}

/**
 * Drops the CPU copy of a tensor's values that tfjs keeps after a read back: call it for every
 * tensor whose buffer a replayed command stream writes, so that the next read sees the GPU.
 *
 * @param backend the webgpu backend
 * @param t the tensor written on the GPU
 */
export function forgetCpuCopy(backend: WebGPUBackend, t: tf.TensorInfo): void {
  const data = (backend as unknown as Internals).tensorMap.get(t.dataId);
  if (data && data.resource instanceof GPUBuffer) data.values = null;
}

/**
 * Makes a variable writable in place: when another tfjs tensor shares its data (a variable
 * assigned from a tensor that is still alive), the variable moves to a copy of its own first.
 *
 * @param backend the webgpu backend
 * @param v the variable
 * @returns `v`
 */
export function ownForWrite(backend: WebGPUBackend, v: tf.Variable): tf.Variable {
  const data = (backend as unknown as Internals).tensorMap.get(v.dataId);
  if (data === undefined || data.refCount > 1) {
    const copy = privateCopy(backend, v);
    v.assign(copy);
    copy.dispose();
  }
  return v;
}

/**
 * A new tensor with `t`'s values in a buffer of its own (one buffer copy on the GPU).
 *
 * @param backend the webgpu backend
 * @param t the tensor to copy
 * @returns the copy, as a tfjs tensor the caller owns
 */
export function privateCopy(backend: WebGPUBackend, t: tf.TensorInfo): tf.Tensor {
  const info = backend.makeTensorInfo(t.shape, t.dtype);
  copyTensor(backend, t, info);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * Records a copy of `src`'s values into `dst` (same size and dtype) in the command stream.
 *
 * @param backend the webgpu backend
 * @param src the tensor read
 * @param dst the tensor written
 */
export function copyTensor(backend: WebGPUBackend, src: tf.TensorInfo, dst: tf.TensorInfo): void {
  const be = backend as unknown as Internals;
  const from = bufferOf(be, src), to = bufferOf(be, dst);
  if (from.size !== to.size || src.dtype !== dst.dtype) {
    throw new Error(`copyTensor: [${src.shape}] ${src.dtype} into [${dst.shape}] ${dst.dtype}`);
  }
  be.tensorMap.get(dst.dataId)!.values = null;
  be.commandQueueOwnedIds.add(src.dataId);
  be.commandQueueOwnedIds.add(dst.dataId);
  be.ensureCommandEncoderReady();
  be.endComputePassEncoder();
  be.commandEncoder!.copyBufferToBuffer(from, 0, to, 0, from.size);
  recorder.current?.copy(from, to, from.size);
}

/**
 * The GPU buffer of a tensor (uploaded first when its values are on the CPU).
 *
 * @param backend the webgpu backend
 * @param t the tensor
 * @returns its buffer
 */
export function gpuBufferOf(backend: WebGPUBackend, t: tf.TensorInfo): GPUBuffer {
  return bufferOf(backend as unknown as Internals, t);
}

/**
 * A new float32 tensor whose buffer is allocated but not written (its values are undefined until
 * a direct dispatch writes all of them).
 *
 * @param backend the webgpu backend
 * @param shape the shape
 * @returns the tensor
 */
export function uninitialized(backend: WebGPUBackend, shape: number[]): tf.Tensor {
  const info = backend.makeTensorInfo(shape, "float32");
  (backend as unknown as Internals).uploadToGPU(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info);
}
