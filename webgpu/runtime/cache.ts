/**
 * The runtime's one cache, shared by its three dispatch paths (tfjs's programs through the
 * patched `recordAndSubmit` of `dispatch_cache.ts`, direct dispatches of `direct.ts`, and a
 * capture's replay of `capture.ts`), per device:
 * - **object ids**: a number per object (pipelines, buffers, tfjs data ids) for cache keys;
 * - **uniform buffers by content**: a uniform block is looked up by its bytes; a buffer with
 *   those bytes is written once and never again. When {@link CACHE_LIMITS}`.uniforms` buffers are
 *   kept, the commands recorded so far are submitted and every cached uniform buffer and bind
 *   group is dropped; the buffers are destroyed, except those a live capture pins
 *   ({@link pinUniform}), which its replays still bind;
 * - **bind groups** by (pipeline, buffers bound, uniform buffer), dropped whole when
 *   {@link CACHE_LIMITS}`.bindGroups` are kept;
 * - the pipelines and layouts of direct kernels, kept for the device's life.
 *
 * It also holds the capture in progress ({@link capturing}), which every path tells about each
 * dispatch and copy it encodes.
 *
 * @module
 */
import { type BackendInternals, flushCommands } from "./tfjs.ts";

const ids = new WeakMap<object, number>();
let nextId = 1;

/**
 * A number per object, the same for the object's life (for cache keys).
 *
 * @param obj any object
 * @returns its number
 * @example
 * ```ts
 * import { objectId } from "./cache.ts";
 * const o = {};
 * console.log(objectId(o) === objectId(o)); // true
 * ```
 */
export function objectId(obj: object): number {
  let id = ids.get(obj);
  if (id === undefined) ids.set(obj, id = nextId++);
  return id;
}

/** How many uniform buffers and bind groups a device's cache keeps before it drops them. */
export const CACHE_LIMITS = { uniforms: 8192, bindGroups: 16384 };

/** What is cached for one device. */
interface DeviceCache {
  uniforms: Map<string, GPUBuffer>;
  bindGroups: Map<string, GPUBindGroup>;
  /** Direct kernels' pipelines, by `kernelKey`. */
  pipelines: Map<string, GPUComputePipeline>;
  /** Direct kernels' layouts, by binding accesses; tfjs pipelines' layouts, by pipeline. */
  layouts: Map<string, { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>;
  programLayouts: WeakMap<GPUComputePipeline, GPUBindGroupLayout>;
}

const caches = new WeakMap<GPUDevice, DeviceCache>();

/** The cache of a device. */
export function cacheOf(device: GPUDevice): DeviceCache {
  let c = caches.get(device);
  if (!c) {
    c = {
      uniforms: new Map(),
      bindGroups: new Map(),
      pipelines: new Map(),
      layouts: new Map(),
      programLayouts: new WeakMap(),
    };
    caches.set(device, c);
  }
  return c;
}

/** Uniform buffers that live captures bind, with their counts: never destroyed by a drop. */
const pinned = new Map<GPUBuffer, number>();

/** Pins (`+1`) or unpins (`-1`) a uniform buffer for a capture's life. */
export function pinUniform(buffer: GPUBuffer, delta: 1 | -1): void {
  const n = (pinned.get(buffer) ?? 0) + delta;
  if (n > 0) pinned.set(buffer, n);
  else pinned.delete(buffer);
}

/**
 * Drops a device's cached uniform buffers and bind groups (the one eviction rule): submits what
 * is recorded (it may bind them), then destroys every unpinned uniform buffer.
 */
export function dropCached(be: BackendInternals): void {
  const c = cacheOf(be.device);
  flushCommands(be);
  for (const b of c.uniforms.values()) if (!pinned.has(b)) b.destroy();
  c.uniforms.clear();
  c.bindGroups.clear();
}

/** The uniform buffer holding exactly `bytes[0, size)`, made and written on a miss. */
export function uniformBuffer(
  be: BackendInternals,
  bytes: ArrayBuffer,
  size: number = bytes.byteLength,
): { buffer: GPUBuffer; hit: boolean } {
  const c = cacheOf(be.device);
  const words = new Uint16Array(bytes, 0, size / 2);
  const key = String.fromCharCode.apply(null, words as unknown as number[]);
  let buffer = c.uniforms.get(key);
  if (buffer !== undefined) return { buffer, hit: true };
  if (c.uniforms.size >= CACHE_LIMITS.uniforms) dropCached(be);
  buffer = be.device.createBuffer({
    size,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  be.queue.writeBuffer(buffer, 0, bytes, 0, size);
  c.uniforms.set(key, buffer);
  return { buffer, hit: false };
}

/** The bind group binding `buffers` at 0, 1, ... and `uniform` (when given) after them. */
export function bindGroupOf(
  be: BackendInternals,
  pipeline: GPUComputePipeline,
  layout: GPUBindGroupLayout | (() => GPUBindGroupLayout),
  buffers: readonly GPUBuffer[],
  uniform: GPUBuffer | null,
): { bindGroup: GPUBindGroup; hit: boolean } {
  const c = cacheOf(be.device);
  let key = `${objectId(pipeline)}:`;
  for (const b of buffers) key += `${objectId(b)},`;
  if (uniform) key += `u${objectId(uniform)}`;
  let bindGroup = c.bindGroups.get(key);
  if (bindGroup !== undefined) return { bindGroup, hit: true };
  if (c.bindGroups.size >= CACHE_LIMITS.bindGroups) c.bindGroups.clear();
  const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({
    binding: i,
    resource: { buffer },
  }));
  if (uniform) entries.push({ binding: buffers.length, resource: { buffer: uniform } });
  bindGroup = be.device.createBindGroup({
    layout: typeof layout === "function" ? layout() : layout,
    entries,
  });
  c.bindGroups.set(key, bindGroup);
  return { bindGroup, hit: false };
}

/** The bind group 0 layout of a tfjs pipeline (`getBindGroupLayout`, asked once per pipeline). */
export function programLayout(be: BackendInternals, pipeline: GPUComputePipeline) {
  const layouts = cacheOf(be.device).programLayouts;
  let layout = layouts.get(pipeline);
  if (layout === undefined) layouts.set(pipeline, layout = pipeline.getBindGroupLayout(0));
  return layout;
}

/** What a capture in progress is told by the dispatch paths. */
export interface CaptureHooks {
  /** A dispatch: its pipeline, bind group, workgroups, the buffers bound and the uniforms. */
  dispatch(
    pipeline: GPUComputePipeline,
    bindGroup: GPUBindGroup,
    workgroups: readonly number[],
    buffers: readonly GPUBuffer[],
    uniform: GPUBuffer | null,
  ): void;
  /** A buffer copy encoded in the command encoder. */
  copy(src: GPUBuffer, dst: GPUBuffer, size: number): void;
  /** Work a capture cannot replay (a dispatch through tfjs's stock path...). */
  unsupported(reason: string): void;
}

/** The capture in progress, if any. */
export const capturing: { current: CaptureHooks | null } = { current: null };
