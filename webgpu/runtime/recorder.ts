/**
 * The hook through which a capture (`capture.ts`) sees the commands the toolkit's dispatch
 * paths record: the patched tfjs dispatch (`dispatch_cache.ts`) and direct dispatches (`direct.ts`)
 * report each dispatch and buffer copy to {@link recorder}`.current` while a capture runs.
 *
 * @module
 */

/** What a capture is told. */
export interface RecorderHooks {
  /** A dispatch: its pipeline, bind group, workgroups, the buffers bound and the uniforms. */
  dispatch(
    pipeline: GPUComputePipeline,
    bindGroup: GPUBindGroup,
    workgroups: readonly number[],
    buffers: readonly GPUBuffer[],
    uniform: GPUBuffer | null,
  ): void;
  /** A buffer copy recorded in the command encoder. */
  copy(src: GPUBuffer, dst: GPUBuffer, size: number): void;
  /** Work the capture cannot replay (a dispatch through tfjs's stock path, a timer...). */
  unsupported(reason: string): void;
}

/** The capture in progress, if any. */
export const recorder: { current: RecorderHooks | null } = { current: null };

/**
 * Uniform buffers that live recordings use, with their counts: the dispatch cache must not
 * destroy them when it flushes.
 */
export const pinnedUniforms: Map<GPUBuffer, number> = new Map();
