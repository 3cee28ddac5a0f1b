/**
 * A generator of tiled implicit-GEMM compute shaders as tfjs-backend-webgpu programs.
 *
 * Every convolution kernel in this folder is one matrix product `C[M, N] = A[M, K] · B[K, N]`
 * whose operands are never materialised: the caller supplies two WGSL functions,
 * `loadA(m, k)` and `loadB(k, n)`, that read them out of the convolution's tensors (and return 0
 * for padding). The generated shader stages `TK`-deep slices of `A` and `B` through workgroup
 * memory; each invocation keeps an `RM x RN` block of `C` in registers. The reduction axis can
 * be split across workgroups (split-K, the third dispatch dimension): each split writes its own
 * partial product and {@link SPLIT_K_REDUCE} sums them in a second, small dispatch. No
 * atomics are used, so results are deterministic.
 *
 * The program follows the `WebGPUProgram` contract of tfjs-backend-webgpu 4.22: the backend
 * prepends the buffer bindings (`result`, then one `array<f32>` per entry of `variableNames`),
 * the `uniforms` struct, and the `_start` entry point that fills `localId`, `localIndex` and
 * `workgroupId` before it calls our `main()`.
 *
 * @module
 */
import type { ProgramUniforms, WebGPUProgram } from "../runtime/tfjs.ts";
import { program, type ProgramKernel } from "./declare.ts";
import { MAX_WORKGROUPS_PER_DIM } from "./wgsl.ts";

export type { ProgramUniforms, WebGPUProgram };

/** Tile shape of a GEMM program; every invocation computes a 4 x 4 block of `C`. */
export interface GemmTile {
  /** Rows of `C` per workgroup (a multiple of 4). */
  tm: number;
  /** Columns of `C` per workgroup (a multiple of 4). */
  tn: number;
  /** Depth of the `A`/`B` slices staged in workgroup memory per step (a multiple of 4). */
  tk: number;
}

/** How the shader reads one operand of the product. */
export interface OperandSpec {
  /** Name of the input buffer (as in `variableNames`). */
  buffer: string;
  /**
   * WGSL body of `fn(outer : i32, k : i32) -> i32`: the flat element index of the operand's
   * element (row `outer` of `A` or column `outer` of `B`, reduction index `k`) in `buffer`, or
   * -1 where the element is an implicit zero (padding, stride gaps). Called only in bounds.
   */
  index: string;
  /** True when consecutive `k` are adjacent in memory (else consecutive `outer` are). */
  contiguousInK: boolean;
  /**
   * True when groups of 4 along the contiguous axis, starting at multiples of 4, are adjacent
   * in memory and share one validity: the buffer is then bound as `array<vec4<f32>>`.
   */
  vec4: boolean;
}

/**
 * How a GEMM is laid out over invocations:
 * - `tiled` ({@link IMPLICIT_GEMM}): workgroup-shared `TK`-deep slices, a 4 x 4 block of
 *   `C` per invocation. What GPUs want: many invocations, shared-memory reuse.
 * - `register` ({@link REGISTER_GEMM}): no shared memory and no barriers; each invocation
 *   reads its operands straight from the buffers and keeps a large `RM x RN` block of `C` in
 *   registers. What CPU adapters (llvmpipe, SwiftShader) want: there every shared or storage
 *   load is a loop over the SIMD lanes, so loads, not arithmetic, cost the time, and a large
 *   block per invocation does the most arithmetic per load.
 */
export type GemmLayout = "tiled" | "register";

/** What a convolution supplies to {@link IMPLICIT_GEMM}. */
export interface GemmSpec {
  /** The `A` operand (`M x K`); its buffer is the first input, `B`'s the second. */
  a: OperandSpec;
  /** The `B` operand (`K x N`). */
  b: OperandSpec;
  /**
   * WGSL body of `fn outRow(m : i32) -> i32`: the output row that row `m` of `C` is stored to
   * (identity when absent; the phases of a strided input gradient each fill a subset of rows).
   */
  outRow?: string;
  /** Output tensor shape; its element count must be `splits * M * N`. */
  outputShape: number[];
  /** Number of reduction splits (the dispatch's third dimension). */
  splits: number;
  /** Rows of `C`. */
  m: number;
  /** Columns of `C`. */
  n: number;
  /**
   * Tile shape. For the `register` layout, `tm x tn` is the block of `C` per invocation and
   * `tk` (4) the granularity of the reduction chunks.
   */
  tile: GemmTile;
  /** Program layout. */
  layout: GemmLayout;
}

/**
 * Picks a tile for an `M x N` product: 64 rows, and 16, 32 or 64 columns so that narrow
 * outputs (16 or 32 channels) do not waste most of a 64-wide tile; 64 to 256 invocations.
 *
 * For the `register` layout, the block of `C` per invocation: 16 rows and up to 32 columns for
 * products of at least {@link LARGE_REGISTER_PRODUCT} multiply-adds, else 4 rows and up to 16
 * columns. Measured on llvmpipe (ResNet20's convolutions, batch 64): 16 x 16 and 16 x 32
 * blocks run about 1.35x faster than 4 x 16 and 1.1x faster than 8 x 16, and larger ones gain
 * nothing more (the accumulators no longer fit in registers); but llvmpipe compiles a 16-row
 * shader about 5x slower than a 4-row one (seconds), which only a large product repays.
 *
 * @param m rows of the product
 * @param n columns of the product
 * @param layout the program layout the tile is for (`tiled` when absent)
 * @param k reduction length (sizes the `register` block; 1 when absent)
 * @returns the tile
 * @example
 * ```ts
 * import { chooseTile } from "./gemm_program.ts";
 * console.log(chooseTile(65536, 16).tn); // 16
 * console.log(chooseTile(65536, 16, "register", 144).tm); // 16
 * ```
 */
export function chooseTile(m: number, n: number, layout: GemmLayout = "tiled", k = 1): GemmTile {
  if (layout === "register") {
    // Columns: all of a narrow output (one load of A serves every column), else a slice.
    const large = m * n * k >= LARGE_REGISTER_PRODUCT;
    const tn = n <= 4 ? 4 : n <= 8 ? 8 : n <= 16 || !large ? 16 : 32;
    return { tm: large ? 16 : 4, tn, tk: 4 };
  }
  const tn = n <= 16 ? 16 : n <= 32 ? 32 : 64;
  return { tm: 64, tn, tk: 16 };
}

/** Multiply-adds from which a `register` GEMM takes the large (16-row) block: 2^22. */
export const LARGE_REGISTER_PRODUCT = 1 << 22;

/**
 * The one split-count rule of the split reductions (the convolution GEMMs' split-K, the grouped
 * and depthwise filter gradients): enough splits of a reduction of length `k` to reach about
 * `targetWorkgroups` workgroups in all, each split at least `minChunk` long (rounded up to a
 * multiple of `tk`, default 1), at most `maxSplits` of them, and, given `mn`, the floats of one
 * split's output, a partial buffer of at most 2^24 floats.
 *
 * @param k reduction length
 * @param outputTiles workgroups per split (output tiles)
 * @param opts the split policy's two knobs, and the bounds above
 * @returns the number of splits and the chunk length per split
 * @example
 * ```ts
 * import { chooseSplits } from "./gemm_program.ts";
 * const s = chooseSplits(65536, 5, { targetWorkgroups: 640, minChunk: 256, tk: 16, mn: 2304 });
 * console.log(s.splits, s.chunk); // 128 512
 * ```
 */
export function chooseSplits(
  k: number,
  outputTiles: number,
  opts: {
    targetWorkgroups: number;
    minChunk: number;
    tk?: number;
    mn?: number;
    maxSplits?: number;
  },
): { splits: number; chunk: number } {
  let splits = Math.max(1, Math.ceil(opts.targetWorkgroups / outputTiles));
  splits = Math.min(splits, Math.max(1, Math.floor(k / opts.minChunk)), opts.maxSplits ?? splits);
  if (opts.mn) splits = Math.min(splits, Math.max(1, Math.floor((1 << 24) / opts.mn)));
  const tk = opts.tk ?? 1;
  const chunk = Math.ceil(Math.ceil(k / splits) / tk) * tk;
  return { splits: Math.ceil(k / chunk), chunk };
}

/**
 * What a GEMM program's WGSL depends on (its declaration's parameters): the tile, the operands'
 * names, index functions and lane widths, the output row map and lane width.
 */
export interface GemmCode {
  /** The `A` operand. */
  a: OperandSpec;
  /** The `B` operand. */
  b: OperandSpec;
  /** The output row map (identity when `null`). */
  outRow: string | null;
  /** Lanes per output element (4 when `N` is a multiple of 4). */
  outVec: number;
  /** The tile. */
  tile: GemmTile;
}

/** The checks, and the code parameters of a spec. */
function gemmCode(spec: GemmSpec): GemmCode {
  const t = spec.tile;
  if (t.tm % 4 !== 0 || t.tn % 4 !== 0 || t.tk % 4 !== 0) throw new Error("gemm tile: not x4");
  if (!spec.a.contiguousInK && spec.b.contiguousInK) {
    throw new Error("gemm: A contiguous in M with B contiguous in K is not implemented");
  }
  return {
    a: spec.a,
    b: spec.b,
    outRow: spec.outRow ?? null,
    outVec: spec.n % 4 === 0 ? 4 : 1,
    tile: t,
  };
}

/** The head facts both GEMM programs share. */
function gemmHead(p: GemmCode) {
  return {
    variableNames: [p.a.buffer, p.b.buffer],
    variableComponents: [p.a.vec4 ? 4 : 1, p.b.vec4 ? 4 : 1],
    outputComponent: p.outVec,
    uniforms: GEMM_UNIFORMS,
  };
}

/** The GEMM programs' uniforms (see {@link gemmUniforms}). */
const GEMM_UNIFORMS = "dimM : i32, dimN : i32, dimK : i32, kChunk : i32, kTiles : i32,";

/**
 * A tiled implicit-GEMM program: `C = A · B` with `A`, `B` read through the spec's index
 * functions. Workgroup `(TN/4, TM/4)`; each invocation owns rows `4·ty..4·ty+3` and columns
 * `4·tx..4·tx+3` of the workgroup's tile and accumulates them in four `vec4` registers.
 * Staged slices are `vec4` arrays laid out along each operand's contiguous axis.
 * Uniforms at run time: `dimM, dimN, dimK, kChunk, kTiles` (see {@link gemmUniforms}).
 */
export const IMPLICIT_GEMM: ProgramKernel<GemmCode> = {
  name: "gemm_tiled",
  shader: (p) => ({
    ...gemmHead(p),
    workgroupSize: [p.tile.tn / 4, p.tile.tm / 4, 1],
    code: () => implicitGemmCode(p),
  }),
};

/** The WGSL body of {@link IMPLICIT_GEMM}. */
function implicitGemmCode(p: GemmCode): string {
  const { tile: t, a, b } = p;
  const wx = t.tn / 4, wy = t.tm / 4, threads = wx * wy;
  const kq = t.tk / 4;
  // Staged layouts: an operand contiguous in k is kept as [outer][k/4] vec4s, one
  // contiguous along its outer axis as [k][outer/4] vec4s.
  const stage = (name: "A" | "B", op: OperandSpec, outer: number): string => {
    const groups = (outer * t.tk) / 4;
    const bound = name === "A" ? "uniforms.dimM" : "uniforms.dimN";
    const start = name === "A" ? "m0" : "n0";
    const idx = "g";
    const [o, k, dst, step] = op.contiguousInK
      ? [`${idx} / ${kq}`, `(${idx} % ${kq}) * 4`, `o * ${kq} + kl / 4`, ["0", "j"]]
      : [`(${idx} % ${outer / 4}) * 4`, `${idx} / ${outer / 4}`, `kl * ${outer / 4} + o / 4`, [
        "j",
        "0",
      ]];
    const load = op.vec4
      ? `if (r < ${bound} && k < kEnd) {
            let i = index${name}(r, k);
            if (i >= 0) { v = ${op.buffer}[i / 4]; }
          }`
      : `for (var j = 0; j < 4; j++) {
            let rj = r + ${step[0]}; let kj = k + ${step[1]};
            if (rj < ${bound} && kj < kEnd) {
              let i = index${name}(rj, kj);
              if (i >= 0) { v[j] = ${op.buffer}[i]; }
            }
          }`;
    const body = `let o = ${o}; let kl = ${k};
          let r = ${start} + o; let k = k0 + kl;
          var v = vec4<f32>(0.0);
          ${load}
          ${name}s[${dst}] = v;`;
    // The scalar loader stays a loop: llvmpipe compiles it unrolled very slowly.
    if (!op.vec4) return `for (var g = lid; g < ${groups}; g += ${threads}) { ${body} }`;
    const copies: string[] = [];
    for (let g0 = 0; g0 < groups; g0 += threads) {
      const guard = g0 + threads > groups ? `if (lid + ${g0} < ${groups})` : "";
      copies.push(`${guard} { let g = lid + ${g0}; ${body} }`);
    }
    return copies.join("\n");
  };
  const aSize = (t.tm * t.tk) / 4, bSize = (t.tn * t.tk) / 4;
  let inner: string;
  if (a.contiguousInK && !b.contiguousInK) {
    inner = `for (var q = 0; q < ${kq}; q++) {
        let b0 = Bs[(q * 4) * ${wx} + tx];
        let b1 = Bs[(q * 4 + 1) * ${wx} + tx];
        let b2 = Bs[(q * 4 + 2) * ${wx} + tx];
        let b3 = Bs[(q * 4 + 3) * ${wx} + tx];
        ${
      [0, 1, 2, 3].map((i) =>
        `{ let a = As[(ty * 4 + ${i}) * ${kq} + q];
             c${i} = fma(vec4<f32>(a.x), b0, c${i}); c${i} = fma(vec4<f32>(a.y), b1, c${i});
             c${i} = fma(vec4<f32>(a.z), b2, c${i}); c${i} = fma(vec4<f32>(a.w), b3, c${i}); }`
      ).join("\n")
    }
      }`;
  } else if (a.contiguousInK) {
    inner = `for (var q = 0; q < ${kq}; q++) {
        let b0 = Bs[(tx * 4) * ${kq} + q];
        let b1 = Bs[(tx * 4 + 1) * ${kq} + q];
        let b2 = Bs[(tx * 4 + 2) * ${kq} + q];
        let b3 = Bs[(tx * 4 + 3) * ${kq} + q];
        ${
      [0, 1, 2, 3].map((i) =>
        `{ let a = As[(ty * 4 + ${i}) * ${kq} + q];
             c${i} = c${i} + vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3)); }`
      ).join("\n")
    }
      }`;
  } else {
    inner = `for (var kk = 0; kk < ${t.tk}; kk++) {
        let a = As[kk * ${wy} + ty];
        let b = Bs[kk * ${wx} + tx];
        c0 = fma(vec4<f32>(a.x), b, c0); c1 = fma(vec4<f32>(a.y), b, c1);
        c2 = fma(vec4<f32>(a.z), b, c2); c3 = fma(vec4<f32>(a.w), b, c3);
      }`;
  }
  const store = [0, 1, 2, 3].map((i) => storeC(`m0 + ty * 4 + ${i}`, "col", `c${i}`, p.outVec))
    .join("\n");
  return `
      var<workgroup> As : array<vec4<f32>, ${aSize}>;
      var<workgroup> Bs : array<vec4<f32>, ${bSize}>;
      fn indexA(m : i32, k : i32) -> i32 { ${a.index} }
      fn indexB(n : i32, k : i32) -> i32 { ${b.index} }
      fn outRow(m : i32) -> i32 { ${p.outRow ?? "return m;"} }
      fn main() {
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let lid = i32(localIndex);
        let m0 = i32(workgroupId.y) * ${t.tm};
        let n0 = i32(workgroupId.x) * ${t.tn};
        let kBegin = i32(workgroupId.z) * uniforms.kChunk;
        let kEnd = min(uniforms.dimK, kBegin + uniforms.kChunk);
        var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0);
        var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
        for (var t = 0; t < uniforms.kTiles; t++) {
          let k0 = kBegin + t * ${t.tk};
          ${stage("A", a, t.tm)}
          ${stage("B", b, t.tn)}
          workgroupBarrier();
          ${inner}
          workgroupBarrier();
        }
        let base = i32(workgroupId.z) * uniforms.dimM * uniforms.dimN;
        let col = n0 + tx * 4;
        ${store}
      }`;
}

/**
 * WGSL: stores `acc`, the `vec4` of `C` at row `row` and columns `col..col+3`, where in bounds
 * (through `outRow`, at `base`, the split's slice).
 */
function storeC(row: string, col: string, acc: string, outVec: number): string {
  if (outVec === 4) {
    return `if (${row} < uniforms.dimM && ${col} < uniforms.dimN) {
          result[(base + outRow(${row}) * uniforms.dimN + ${col}) / 4] = ${acc};
        }`;
  }
  return `if (${row} < uniforms.dimM) {
        let o = base + outRow(${row}) * uniforms.dimN + ${col};
        for (var l = 0; l < 4; l++) {
          if (${col} + l < uniforms.dimN) { result[o + l] = ${acc}[l]; }
        }
      }`;
}

/** Invocations per workgroup of {@link REGISTER_GEMM}. */
const REGISTER_WORKGROUP = 64;

/**
 * A GEMM without workgroup memory: `C = A · B` with `A`, `B` read through the spec's index
 * functions straight from the buffers. Each invocation owns `RM = tile.tm` rows and
 * `RN = tile.tn` columns of `C` (one split's share of the reduction) and keeps them in
 * `RM x RN/4` `vec4` registers; invocations are numbered column block first, then row block,
 * then split, 64 to a workgroup, over a 1-D or 2-D grid of workgroups. Per step of the
 * reduction it loads `RM` values of `A` and `RN` of `B` (as `vec4`s along each operand's
 * contiguous axis) for `RM · RN` multiply-adds. Same uniforms and output layout as
 * {@link IMPLICIT_GEMM}.
 */
export const REGISTER_GEMM: ProgramKernel<GemmCode> = {
  name: "gemm_register",
  shader: (p) => ({
    ...gemmHead(p),
    workgroupSize: [REGISTER_WORKGROUP, 1, 1],
    code: () => registerGemmCode(p),
  }),
};

/** The WGSL body of {@link REGISTER_GEMM}. */
function registerGemmCode(p: GemmCode): string {
  const { tile: t, a, b } = p;
  const RM = t.tm, RN = t.tn, NQ = RN / 4;
  // loadA(r, k): A[r, k..k+3] (contiguous in k) or A[r..r+3, k]; loadB(n, k): B[k, n..n+3]
  // (contiguous in n) or B[k..k+3, n]. Zero where out of range or an implicit zero.
  const loader = (name: "A" | "B", op: OperandSpec): string => {
    const bound = name === "A" ? "uniforms.dimM" : "uniforms.dimN";
    const fn = `index${name}`;
    if (op.vec4) {
      const check = op.contiguousInK ? `r < ${bound}` : `r < ${bound} && k < kEnd`;
      return `fn load${name}(r : i32, k : i32, kEnd : i32) -> vec4<f32> {
          if (${check}) {
            let i = ${fn}(r, k);
            if (i >= 0) { return ${op.buffer}[i / 4]; }
          }
          return vec4<f32>(0.0);
        }`;
    }
    const [rj, kj] = op.contiguousInK ? ["r", "k + j"] : ["r + j", "k"];
    return `fn load${name}(r : i32, k : i32, kEnd : i32) -> vec4<f32> {
        var v = vec4<f32>(0.0);
        for (var j = 0; j < 4; j++) {
          if (${rj} < ${bound} && ${kj} < kEnd) {
            let i = ${fn}(${rj}, ${kj});
            if (i >= 0) { v[j] = ${op.buffer}[i]; }
          }
        }
        return v;
      }`;
  };
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const acc = (i: number, j: number) => `c${i}_${j}`;
  const decls = range(RM).flatMap((i) => range(NQ).map((j) => `var ${acc(i, j)} = vec4<f32>(0.0);`))
    .join(" ");
  const lanes = ["x", "y", "z", "w"];
  // Per pass: the loads of B first, then each load of A followed by the multiply-adds that
  // use it (about 10% faster on llvmpipe than all loads first: fewer values live at once).
  let bLoads: string[], aRows: string[], kStep: number;
  if (a.contiguousInK && !b.contiguousInK) {
    // Four reduction steps per pass: A as vec4 along k, B as vec4 along n.
    kStep = 4;
    bLoads = range(4).flatMap((q) =>
      range(NQ).map((j) => `let b${q}_${j} = loadB(n0 + ${4 * j}, k + ${q}, kEnd);`)
    );
    aRows = range(RM).map((i) =>
      [`let a${i} = loadA(m0 + ${i}, k, kEnd);`].concat(
        range(4).flatMap((q) =>
          range(NQ).map((j) =>
            `${acc(i, j)} = fma(vec4<f32>(a${i}.${lanes[q]}), b${q}_${j}, ${acc(i, j)});`
          )
        ),
      ).join("\n")
    );
  } else if (a.contiguousInK) {
    // Both along k: one dot product per element of C.
    kStep = 4;
    bLoads = range(RN).map((c) => `let b${c} = loadB(n0 + ${c}, k, kEnd);`);
    aRows = range(RM).map((i) =>
      [`let a${i} = loadA(m0 + ${i}, k, kEnd);`].concat(
        range(NQ).map((j) =>
          `${acc(i, j)} = ${acc(i, j)} + vec4<f32>(${
            range(4).map((l) => `dot(a${i}, b${4 * j + l})`).join(", ")
          });`
        ),
      ).join("\n")
    );
  } else {
    // One reduction step per pass: A as vec4 along m (four rows), B as vec4 along n.
    kStep = 1;
    bLoads = range(NQ).map((j) => `let b${j} = loadB(n0 + ${4 * j}, k, kEnd);`);
    aRows = range(RM / 4).map((q) =>
      [`let a${q} = loadA(m0 + ${4 * q}, k, kEnd);`].concat(
        range(4).flatMap((l) =>
          range(NQ).map((j) => {
            const c = acc(4 * q + l, j);
            return `${c} = fma(vec4<f32>(a${q}.${lanes[l]}), b${j}, ${c});`;
          })
        ),
      ).join("\n")
    );
  }
  const step = bLoads.concat(aRows).join("\n");
  const store = range(RM).flatMap((i) =>
    range(NQ).map((j) => storeC(`m0 + ${i}`, `n0 + ${4 * j}`, acc(i, j), p.outVec))
  ).join("\n");
  return `
      fn indexA(m : i32, k : i32) -> i32 { ${a.index} }
      fn indexB(n : i32, k : i32) -> i32 { ${b.index} }
      fn outRow(m : i32) -> i32 { ${p.outRow ?? "return m;"} }
      ${loader("A", a)}
      ${loader("B", b)}
      fn main(g : i32) {
        let nBlocks = (uniforms.dimN + ${RN - 1}) / ${RN};
        let mBlocks = (uniforms.dimM + ${RM - 1}) / ${RM};
        let splits = (uniforms.dimK + uniforms.kChunk - 1) / uniforms.kChunk;
        let nb = g % nBlocks;
        let rest = g / nBlocks;
        let mb = rest % mBlocks;
        let s = rest / mBlocks;
        if (s >= max(splits, 1)) { return; }
        let m0 = mb * ${RM};
        let n0 = nb * ${RN};
        let kBegin = s * uniforms.kChunk;
        let kEnd = min(uniforms.dimK, kBegin + uniforms.kChunk);
        ${decls}
        for (var k = kBegin; k < kEnd; k += ${kStep}) {
          ${step}
        }
        let base = s * uniforms.dimM * uniforms.dimN;
        ${store}
      }`;
}

/**
 * The program for a spec: {@link REGISTER_GEMM} for the `register` layout, else
 * {@link IMPLICIT_GEMM}; its grid: column tiles, row tiles and splits for the tiled layout, a
 * flat grid of blocks of `C` for the register one.
 */
export function makeGemmProgram(spec: GemmSpec): WebGPUProgram {
  const t = spec.tile;
  const p = gemmCode(spec);
  if (spec.layout === "register") {
    const invocations = spec.splits * Math.ceil(spec.m / t.tm) * Math.ceil(spec.n / t.tn);
    const groups = Math.ceil(invocations / REGISTER_WORKGROUP);
    const x = Math.min(groups, MAX_WORKGROUPS_PER_DIM);
    return program(REGISTER_GEMM, p, {
      outputShape: spec.outputShape,
      dispatchLayout: { x: [0] },
      dispatch: [x, Math.ceil(groups / x), 1],
    });
  }
  return program(IMPLICIT_GEMM, p, {
    outputShape: spec.outputShape,
    dispatchLayout: { x: [0], y: [1], z: [2] },
    dispatch: [Math.ceil(spec.n / t.tn), Math.ceil(spec.m / t.tm), spec.splits],
  });
}

/**
 * The uniform values a GEMM program reads: `dimM, dimN, dimK`, the reduction length per split
 * (`chunk`, a multiple of the tile depth) and the tile steps per chunk.
 *
 * @param spec the product
 * @param k reduction length
 * @param chunk reduction length per split
 * @returns the uniform list for `runWebGPUProgram`
 */
export function gemmUniforms(spec: GemmSpec, k: number, chunk: number): ProgramUniforms {
  return [spec.m, spec.n, k, chunk, Math.ceil(chunk / spec.tile.tk)].map((v) => ({
    type: "int32",
    data: [v],
  }));
}

/**
 * Second pass of split-K: `out[i] = Σ_s partial[s, i]`, one invocation per output element.
 * Uniform at run time: `numSplits`.
 */
export const SPLIT_K_REDUCE: ProgramKernel<Record<string, never>> = {
  name: "splitk_reduce",
  shader: () => ({
    variableNames: ["partial"],
    workgroupSize: [64, 1, 1],
    size: true,
    uniforms: "numSplits : i32,",
    code: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var s = 0.0;
          for (var z = 0; z < uniforms.numSplits; z++) {
            s = s + partial[z * uniforms.size + index];
          }
          setOutputAtIndex(index, s);
        }
      }`,
  }),
};

/** The reduction of split-K partial products into one output (its uniform: `numSplits`). */
export function splitKReduce(outputShape: number[]): WebGPUProgram {
  const size = outputShape.reduce((a, b) => a * b, 1);
  return program(SPLIT_K_REDUCE, {}, {
    outputShape,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(size / 64), 1, 1],
  });
}
