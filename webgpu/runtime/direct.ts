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
 * the `direct` counter group and in `countDispatches`. A kernel is a declaration
 * ({@link DirectKernel}); its pipeline is cached under a key derived from the declaration.
 *
 * Tensors written in place must be owned (one tfjs tensor on the data; see
 * {@link ownForWrite}); their CPU copy, which tfjs keeps after a read, is dropped, so the
 * next read sees the new values.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../../deps.ts";
import { directCounters } from "./counters.ts";
import { bindGroupOf, cacheOf, capturing, uniformBuffer } from "./cache.ts";
import {
  type BackendInternals,
  bufferOf,
  countInPass,
  encodeCopy,
  encodeDispatch,
  forgetValues,
  holdUntilSubmit,
  internals,
  refCountOf,
} from "./tfjs.ts";

/** How a direct dispatch binds a tensor. */
export type Access = "read" | "read_write";

/** A storage binding of a direct kernel: its WGSL name, its access and its element type. */
export type StorageBinding = readonly [name: string, access: Access, type: string];

/**
 * A direct kernel's declaration: its family name, and from its parameters (everything the WGSL
 * depends on, and nothing else) its storage bindings and the rest of its WGSL module. The
 * pipeline cache key is {@link kernelKey}`(name, params)`: two calls share a pipeline exactly
 * when they have the same parameters, so the same key always comes with the same code.
 */
export interface DirectKernel<P> {
  /** The kernel family (also the pipeline's label prefix). */
  name: string;
  /** The tensor bindings `@group(0) @binding(i)`, in order (`runDirect` declares them). */
  storage(params: P): readonly StorageBinding[];
  /**
   * The WGSL after the storage bindings: (when the call has uniforms) a uniform buffer at the
   * next binding, and a `@compute` entry point named `main`. Called once per pipeline.
   */
  code(params: P): string;
}

/** One call of a direct kernel: the tensors bound, the uniform bytes, the grid. */
export interface DirectCall {
  /** The tensors bound, in binding order. */
  tensors: readonly tf.TensorInfo[];
  /** Bytes of the uniform buffer (a multiple of 16), when the shader has one. */
  uniforms?: ArrayBuffer;
  /** Workgroups per dimension. */
  workgroups: readonly [number, number, number];
}

/**
 * The pipeline cache key of a kernel with these parameters.
 *
 * @param name the kernel family
 * @param params its parameters (plain data)
 * @returns the key
 * @example
 * ```ts
 * import { kernelKey } from "./direct.ts";
 * console.log(kernelKey("sgd", { momentum: true })); // sgd{"momentum":true}
 * ```
 */
export function kernelKey(name: string, params: unknown): string {
  return `${name}${JSON.stringify(params)}`;
}

/**
 * The most storage buffers one direct dispatch may bind on this backend's device (its
 * `maxStorageBuffersPerShaderStage`; 8 unless the device was created with more).
 */
export function maxStorageBindings(backend: WebGPUBackend): number {
  return internals(backend).device.limits.maxStorageBuffersPerShaderStage;
}

function layoutFor(be: BackendInternals, accesses: readonly Access[], uniform: boolean) {
  const layouts = cacheOf(be.device).layouts;
  const key = accesses.map((a) => (a === "read" ? "r" : "w")).join("") + (uniform ? "u" : "");
  let layout = layouts.get(key);
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
    layouts.set(key, layout);
  }
  return layout;
}

/**
 * Records one call of a direct kernel into the backend's command stream (see the module doc). A
 * buffer may appear only once among the bindings when any binding of it is read-write (WebGPU
 * forbids reading and writing one buffer in one dispatch).
 *
 * @param backend the webgpu backend
 * @param kernel the kernel's declaration
 * @param params its parameters (they pick the pipeline)
 * @param call the tensors, uniforms and grid
 * @example
 * ```ts ignore
 * runDirect(backend, SCALE2, { vec: 4 }, { tensors: [x], workgroups: flatGrid(n / 4) });
 * ```
 */
export function runDirect<P>(
  backend: WebGPUBackend,
  kernel: DirectKernel<P>,
  params: P,
  call: DirectCall,
): void {
  const be = internals(backend);
  const key = kernelKey(kernel.name, params);
  const storage = kernel.storage(params);
  const accesses = storage.map((b) => b[1]);
  if (accesses.length !== call.tensors.length) {
    throw new Error(
      `direct dispatch ${key}: ${call.tensors.length} tensors for ${accesses.length} bindings`,
    );
  }
  const buffers = call.tensors.map((t) => bufferOf(be, t));
  for (let i = 0; i < buffers.length; i++) {
    if (accesses[i] !== "read_write") continue;
    if (buffers.indexOf(buffers[i]) !== i || buffers.lastIndexOf(buffers[i]) !== i) {
      throw new Error(`direct dispatch ${key}: binding ${i} is written and bound twice`);
    }
    // tfjs keeps a CPU copy of what it read back; after this write it would be stale.
    forgetValues(be, call.tensors[i]);
  }
  const layout = layoutFor(be, accesses, call.uniforms !== undefined);
  const pipelines = cacheOf(be.device).pipelines;
  let pipeline = pipelines.get(key);
  if (!pipeline) {
    const decls = storage.map(([name, access, type], i) =>
      `@group(0) @binding(${i}) var<storage, ${access}> ${name} : array<${type}>;\n`
    );
    const code = decls.join("") + kernel.code(params);
    const module = be.device.createShaderModule({ code, label: key });
    pipeline = be.device.createComputePipeline({
      layout: layout.pipeline,
      compute: { module, entryPoint: "main" },
      label: key,
    });
    pipelines.set(key, pipeline);
  }
  if (call.uniforms && call.uniforms.byteLength % 16 !== 0) {
    throw new Error(`direct dispatch ${key}: uniform block of ${call.uniforms.byteLength} bytes`);
  }
  const uniform = call.uniforms ? uniformBuffer(be, call.uniforms).buffer : null;
  const made = bindGroupOf(be, pipeline, layout.group, buffers, uniform);
  if (!made.hit) directCounters.bindGroups++;
  const bindGroup = made.bindGroup;
  // As the backend records its own programs: the tensors stay alive until the next submit.
  holdUntilSubmit(be, call.tensors);
  encodeDispatch(be, pipeline, bindGroup, call.workgroups);
  capturing.current?.dispatch(pipeline, bindGroup, call.workgroups, buffers, uniform);
  directCounters.dispatches++;
  countInPass(be);
}

/**
 * Drops the CPU copy of a tensor's values that tfjs keeps after a read back: call it for every
 * tensor whose buffer a replayed command stream writes, so that the next read sees the GPU.
 */
export function forgetCpuCopy(backend: WebGPUBackend, t: tf.TensorInfo): void {
  forgetValues(internals(backend), t);
}

/**
 * Makes a variable writable in place: when another tfjs tensor shares its data (a variable
 * assigned from a tensor that is still alive), the variable moves to a copy of its own first.
 */
export function ownForWrite(backend: WebGPUBackend, v: tf.Variable): tf.Variable {
  const refs = refCountOf(internals(backend), v);
  if (refs === 0 || refs > 1) {
    const copy = privateCopy(backend, v);
    v.assign(copy);
    copy.dispose();
  }
  return v;
}

/** A new tensor with `t`'s values in a buffer of its own (one buffer copy on the GPU). */
export function privateCopy(backend: WebGPUBackend, t: tf.TensorInfo): tf.Tensor {
  const info = backend.makeTensorInfo(t.shape, t.dtype);
  copyTensor(backend, t, info);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** Records a copy of `src`'s values into `dst` (same size and dtype) in the command stream. */
export function copyTensor(backend: WebGPUBackend, src: tf.TensorInfo, dst: tf.TensorInfo): void {
  const be = internals(backend);
  const from = bufferOf(be, src), to = bufferOf(be, dst);
  if (from.size !== to.size || src.dtype !== dst.dtype) {
    throw new Error(`copyTensor: [${src.shape}] ${src.dtype} into [${dst.shape}] ${dst.dtype}`);
  }
  forgetValues(be, dst);
  holdUntilSubmit(be, [src, dst]);
  encodeCopy(be, from, to, from.size);
  capturing.current?.copy(from, to, from.size);
}

/**
 * A new float32 tensor whose buffer is allocated but not written (its values are undefined until
 * a direct dispatch writes all of them).
 */
export function uninitialized(backend: WebGPUBackend, shape: number[]): tf.Tensor {
  const info = backend.makeTensorInfo(shape, "float32");
  bufferOf(internals(backend), info); // allocates it
  return tf.engine().makeTensorFromTensorInfo(info);
}
