/**
 * Multi-tensor elementwise kernels: one elementwise update applied to many tensors of different
 * sizes in one dispatch (as PyTorch's `_foreach` / multi-tensor-apply kernels do), in place,
 * through {@link runDirect}.
 *
 * A kernel says how one *item* is updated: the accesses of its tensors (all of one size) and
 * WGSL statements for element `i`, with up to four float parameters per item. Items are packed
 * into dispatches of as many as the device's storage-buffer limit allows; each dispatch runs a
 * generated shader whose workgroups are split between its items (an item of `n` elements, or
 * `n / 4` `vec4` lanes when `n` is a multiple of 4, gets `ceil(lanes / 256)` workgroups).
 * A ResNet20's 65 parameters take 5 dispatches at 64 storage buffers per stage (3 per
 * parameter), 33 at WebGPU's default of 8.
 *
 * @module
 */
import { tf, type WebGPUBackend } from "../../deps.ts";
import {
  type Access,
  type DirectKernel,
  maxStorageBindings,
  runDirect,
} from "../runtime/direct.ts";
import { flatGrid, flatMain } from "./wgsl.ts";

/**
 * One elementwise update, applied to items of tensors: a declaration whose parameters `P` (what
 * the WGSL depends on) pick the variant. The pipeline key is the name, the parameters and the
 * items' lane widths.
 */
export interface MultiTensorKernel<P = Record<string, never>> {
  /** Family name. */
  name: string;
  /** Access of each tensor of an item, in order. */
  accesses: (params: P) => readonly Access[];
  /**
   * WGSL statements that update element `i` of one item. `t(k)` names the item's tensor `k`
   * (an array of `type`), `p` is the item's `vec4<f32>` of parameters.
   */
  body: (params: P, t: (k: number) => string, type: "f32" | "vec4<f32>") => string;
}

/** The parameters of one dispatch's shader: the kernel's, and each item's lane width. */
interface GroupParams<P> {
  params: P;
  widths: number[];
}

/** The element type of an item's bindings of lane width `w`. */
const lanes = (w: number) => (w === 4 ? "vec4<f32>" : "f32");

const declarations = new WeakMap<object, DirectKernel<GroupParams<never>>>();

/** The direct kernel of a multi-tensor kernel (one dispatch over items of given widths). */
function directKernelOf<P>(kernel: MultiTensorKernel<P>): DirectKernel<GroupParams<P>> {
  let d = declarations.get(kernel) as DirectKernel<GroupParams<P>> | undefined;
  if (!d) {
    d = {
      name: kernel.name,
      storage: ({ params, widths }) =>
        widths.flatMap((w, j) =>
          kernel.accesses(params).map((a, m) => [`t${j}_${m}`, a, lanes(w)] as const)
        ),
      code: ({ params, widths }) => shader(kernel, params, widths),
    };
    declarations.set(kernel, d as DirectKernel<GroupParams<never>>);
  }
  return d;
}

/** One item: its tensors (in the order of `accesses`, all of one size) and parameters. */
export interface MultiTensorItem {
  /** The tensors. */
  tensors: tf.TensorInfo[];
  /** Up to four float parameters (`p.x` to `p.w`); missing ones are 0. */
  params: number[];
}

/** Items one dispatch takes at most, whatever the limit (keeps the shaders short). */
export const MAX_ITEMS_PER_DISPATCH = 16;
const THREADS = 256;

/** Items per dispatch for a kernel on a backend. */
export function itemsPerDispatch(backend: WebGPUBackend, perItem: number, name: string): number {
  const n = Math.floor(maxStorageBindings(backend) / perItem);
  if (n < 1) {
    throw new Error(
      `${name}: needs ${perItem} storage buffers per dispatch, ` +
        `the device allows ${maxStorageBindings(backend)}`,
    );
  }
  return Math.min(n, MAX_ITEMS_PER_DISPATCH);
}

function shader<P>(kernel: MultiTensorKernel<P>, params: P, widths: number[]): string {
  const k = widths.length;
  const binding = k * kernel.accesses(params).length;
  const lines = [
    `struct Items { item : array<vec4<u32>, ${k}>, param : array<vec4<f32>, ${k}>, };`,
    `@group(0) @binding(${binding}) var<uniform> u : Items;`,
    flatMain(THREADS),
  ];
  widths.forEach((w, j) => {
    const body = kernel.body(params, (m) => `t${j}_${m}`, lanes(w));
    lines.push(
      `  if (wg < u.item[${j}].z) {`,
      `    let i = (wg - u.item[${j}].y) * ${THREADS}u + lid;`,
      `    if (i < u.item[${j}].x) {`,
      `      let p = u.param[${j}];`,
      body.split("\n").map((l) => `      ${l.trim()}`).join("\n"),
      "    }",
      "    return;",
      "  }",
    );
  });
  lines.push("}");
  return lines.join("\n");
}

/** Records one dispatch over `items` (at most {@link itemsPerDispatch}). */
function dispatchGroup<P>(
  backend: WebGPUBackend,
  kernel: MultiTensorKernel<P>,
  params: P,
  items: MultiTensorItem[],
): void {
  const k = items.length;
  const bytes = new ArrayBuffer(32 * k);
  const meta = new Uint32Array(bytes, 0, 4 * k);
  const values = new Float32Array(bytes, 16 * k, 4 * k);
  const widths: number[] = [];
  const tensors: tf.TensorInfo[] = [];
  let groups = 0;
  items.forEach((item, j) => {
    const n = tf.util.sizeFromShape(item.tensors[0].shape);
    const w = n % 4 === 0 ? 4 : 1;
    widths.push(w);
    const lanes = n / w;
    meta.set([lanes, groups, groups + Math.ceil(lanes / THREADS), 0], 4 * j);
    groups += Math.ceil(lanes / THREADS);
    values.set(item.params.slice(0, 4), 4 * j);
    tensors.push(...item.tensors);
  });
  runDirect(backend, directKernelOf(kernel), { params, widths }, {
    tensors,
    uniforms: bytes,
    workgroups: flatGrid(groups * THREADS, THREADS),
  });
}

/**
 * Applies `kernel` to every item, in place, in as few dispatches as the device allows. Within
 * one dispatch no written tensor may share its data with another bound tensor; items that
 * would are put into the next dispatch. Empty items (size 0) are skipped.
 *
 * @param backend the webgpu backend
 * @param kernel the update
 * @param params the kernel's parameters
 * @param items the items, in order
 * @returns the number of dispatches recorded
 * @example
 * ```ts ignore
 * const scale: MultiTensorKernel = { name: "scale", accesses: () => ["read_write"],
 *   body: (_, t) => `${t(0)}[i] = ${t(0)}[i] * p.x;` };
 * runMultiTensor(backend, scale, {}, tensors.map((x) => ({ tensors: [x], params: [0.5] })));
 * ```
 */
export function runMultiTensor<P>(
  backend: WebGPUBackend,
  kernel: MultiTensorKernel<P>,
  params: P,
  items: readonly MultiTensorItem[],
): number {
  const accesses = kernel.accesses(params);
  const limit = itemsPerDispatch(backend, accesses.length, kernel.name);
  let group: MultiTensorItem[] = [];
  let written = new Set<object>();
  let read = new Set<object>();
  let dispatches = 0;
  const flush = () => {
    if (group.length === 0) return;
    dispatchGroup(backend, kernel, params, group);
    dispatches++;
    group = [];
    written = new Set();
    read = new Set();
  };
  for (const item of items) {
    if (item.tensors.length !== accesses.length) {
      throw new Error(`${kernel.name}: an item needs ${accesses.length} tensors`);
    }
    const n = tf.util.sizeFromShape(item.tensors[0].shape);
    for (const t of item.tensors) {
      if (tf.util.sizeFromShape(t.shape) !== n || t.dtype !== "float32") {
        throw new Error(`${kernel.name}: an item's tensors must be float32 of one size`);
      }
    }
    if (n === 0) continue;
    const w = item.tensors.filter((_, m) => accesses[m] === "read_write");
    const r = item.tensors.filter((_, m) => accesses[m] === "read");
    const clash = (set: Set<object>, ts: tf.TensorInfo[]) => ts.some((t) => set.has(t.dataId));
    if (clash(written, item.tensors) || clash(read, w) || group.length === limit) flush();
    const ids = w.map((t) => t.dataId);
    if (new Set(ids).size !== ids.length || r.some((t) => ids.includes(t.dataId))) {
      throw new Error(`${kernel.name}: a written tensor of an item shares data with another`);
    }
    group.push(item);
    for (const t of w) written.add(t.dataId);
    for (const t of r) read.add(t.dataId);
  }
  flush();
  return dispatches;
}
