/**
 * WGSL snippets shared by the kernels of this folder (and their grids): the flat entry point
 * over a grid of more than 65,535 workgroups, and the storage bindings of direct kernels.
 *
 * @module
 */
import type { StorageBinding } from "../runtime/direct.ts";

/** Largest number of workgroups in one dimension that every WebGPU device allows. */
export const MAX_WORKGROUPS_PER_DIM = 65535;

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

/** A read-only storage binding of a direct kernel (of f32 unless `type` says otherwise). */
export const read = (name: string, type = "f32"): StorageBinding => [name, "read", type];
/** A read-write storage binding of a direct kernel (of f32 unless `type` says otherwise). */
export const write = (name: string, type = "f32"): StorageBinding => [name, "read_write", type];
