/**
 * Folders import one way. `ALLOWED` is the whole matrix: for each top-level folder (and the root's
 * files, split into the pinned dependency files `deps` and the CLIs and entry points `root`), the
 * folders it may import. The tests fail on any import not in the table, on a cycle in the table or
 * in the imports found, and on any import of the WebGPU layer (`webgpu/`, or tfjs's webgpu backend)
 * from models, training, data or the backend-neutral ops. Every import of every TypeScript file is
 * parsed (static imports, re-exports, side-effect imports, dynamic imports, and the imports of doc
 * examples, which `deno test --doc` runs) and resolved against the file.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** The root's files that pin npm dependencies: imported by everyone, importing nothing of ours. */
const DEPS_FILES = ["deps.ts", "deno_deps.ts", "dev_deps.ts"];

/**
 * Which folders each folder may import (besides itself), lowest first. `deps` is the root's
 * pinned-dependency files, `root` the root's other files (mod.ts and the CLIs). `backend` is
 * allowed to models, data and training for doc examples (which start a backend to run) and types.
 */
const ALLOWED: Record<string, readonly string[]> = {
  deps: [],
  util: ["deps"],
  io: ["deps", "util"],
  ops: ["deps", "util"],
  webgpu: ["deps", "util", "ops"],
  backend: ["deps", "util", "webgpu"],
  cli: ["deps", "util"],
  report: ["deps", "util"],
  data: ["deps", "util", "backend"],
  models: ["deps", "util", "io", "ops", "backend"],
  run: ["deps", "util", "io", "data", "models", "report"],
  training: ["deps", "util", "data", "ops", "models", "run", "backend"],
  web: [
    "deps",
    "util",
    "io",
    "ops",
    "webgpu",
    "backend",
    "data",
    "models",
    "report",
    "run",
    "training",
  ],
  bench: [
    "deps",
    "util",
    "cli",
    "io",
    "ops",
    "webgpu",
    "backend",
    "data",
    "models",
    "training",
  ],
};
// The root's files (mod.ts, the CLIs) may import every folder; the tests, the root as well.
ALLOWED.root = Object.keys(ALLOWED);
ALLOWED.tests = [...ALLOWED.root, "root"];
/** Folders that must not depend on the WebGPU layer, not even through tfjs's webgpu backend. */
const NEUTRAL = ["models", "training", "data", "ops"];
/** Folders that are not sources: git-ignored outputs and caches. */
const SKIP = new Set(["node_modules", "runs", "dist", "out", "fixtures"]);

/**
 * The module specifiers a source imports, with their line numbers.
 *
 * @param source TypeScript source
 * @returns the specifiers
 */
function importsOf(source: string): { specifier: string; line: number }[] {
  const patterns = [
    // import x from "m"; import { a } from "m"; export { a } from "m"; export * from "m"
    /\b(?:import|export)\s+(?:type\s+)?(?:[\w*\s{},$]*?)\s*from\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g, // import "m"
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g, // import("m")
  ];
  const found: { specifier: string; line: number }[] = [];
  for (const re of patterns) {
    for (const m of source.matchAll(re)) {
      found.push({ specifier: m[1], line: source.slice(0, m.index).split("\n").length });
    }
  }
  return found;
}

/**
 * The group of a path relative to the root: its top-level folder, or `deps` / `root` for the
 * root's own files.
 *
 * @param path a path relative to the root
 * @returns the group's name
 */
function groupOf(path: string): string {
  const parts = path.split(/[\\/]/);
  if (parts.length > 1) return parts[0];
  return DEPS_FILES.includes(parts[0]) ? "deps" : "root";
}

/**
 * Why an import is not allowed, or `null`.
 *
 * @param file the importing file (absolute)
 * @param specifier the module specifier
 * @returns the reason, or `null` when the import is allowed
 */
function violation(file: string, specifier: string): string | null {
  const from = groupOf(relative(ROOT, file));
  if (specifier.includes("tfjs-backend-webgpu") && NEUTRAL.includes(from)) {
    return "names tfjs's webgpu backend";
  }
  if (!specifier.startsWith(".")) return null;
  const target = relative(ROOT, resolve(dirname(file), specifier));
  const to = groupOf(target);
  if (to === from) return null;
  const allowed = ALLOWED[from];
  if (allowed === undefined) return `is in ${from}/, a folder missing from ALLOWED`;
  return allowed.includes(to) ? null : `imports ${target} (${from} -> ${to} is not in ALLOWED)`;
}

/**
 * A cycle of a directed graph, or `null`.
 *
 * @param edges each node's successors
 * @returns the nodes of one cycle, first repeated last
 */
function findCycle(edges: Record<string, readonly string[]>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (n: string): string[] | null => {
    if (state.get(n) === "done") return null;
    if (state.get(n) === "open") return [...path.slice(path.indexOf(n)), n];
    state.set(n, "open");
    path.push(n);
    for (const m of edges[n] ?? []) {
      const cycle = visit(m);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(n, "done");
    return null;
  };
  for (const n of Object.keys(edges)) {
    const cycle = visit(n);
    if (cycle) return cycle;
  }
  return null;
}

async function* sources(dir: string, top = true): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      if (!e.name.startsWith(".") && !SKIP.has(e.name) && !(top && e.name === "docs")) {
        yield* sources(path, false);
      }
    } else if (e.isFile && /\.(ts|tsx|js|mjs)$/.test(e.name)) yield path;
  }
}

/** Every import between groups found in the tree, and the files read. */
async function scan(): Promise<{
  files: number;
  edges: Map<string, Set<string>>;
  problems: string[];
}> {
  const edges = new Map<string, Set<string>>();
  const problems: string[] = [];
  let files = 0;
  for await (const file of sources(ROOT)) {
    files++;
    const from = groupOf(relative(ROOT, file));
    for (const { specifier, line } of importsOf(await Deno.readTextFile(file))) {
      const why = violation(file, specifier);
      if (why) problems.push(`${relative(ROOT, file)}:${line} ${why} ("${specifier}")`);
      if (!specifier.startsWith(".")) continue;
      const to = groupOf(relative(ROOT, resolve(dirname(file), specifier)));
      if (to !== from) edges.set(from, (edges.get(from) ?? new Set()).add(to));
    }
  }
  return { files, edges, problems };
}

Deno.test("layers: the import parser finds every form of import and resolves it", () => {
  const file = join(ROOT, "models", "x.ts");
  const source = [
    'import { a } from "../webgpu/install.ts";',
    'import type { B } from "../ops/conv.ts";',
    'export * from "../webgpu/runtime/tfjs.ts";',
    'import "../webgpu/kernels/list.ts";',
    'const m = await import("../webgpu/runtime/capture.ts");',
    ' * import { c } from "../webgpu/kernels/sgd.ts"; // a doc example',
    'import {\n  d,\n  e,\n} from "./layers.ts";',
    'import { WebGPUBackend } from "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";',
  ].join("\n");
  const found = importsOf(source);
  assert.deepEqual(found.map((f) => f.specifier).sort(), [
    "../ops/conv.ts",
    "../webgpu/install.ts",
    "../webgpu/kernels/list.ts",
    "../webgpu/kernels/sgd.ts",
    "../webgpu/runtime/capture.ts",
    "../webgpu/runtime/tfjs.ts",
    "./layers.ts",
    "npm:@tensorflow/tfjs-backend-webgpu@4.22.0",
  ]);
  const bad = found.filter((f) => violation(file, f.specifier) !== null).length;
  assert.equal(bad, 6, "five imports of webgpu/ and one of tfjs's webgpu backend");
  assert.equal(violation(file, "../ops/conv.ts"), null);
  assert.equal(violation(file, "./webgpu_notes.ts"), null, "a file of models/ named webgpu_*");
  assert.equal(violation(file, "../deps.ts"), null, "the pinned dependencies");
  assert.match(violation(file, "../train.ts")!, /models -> root/, "a CLI file");
  assert.match(violation(join(ROOT, "io", "x.ts"), "../models/layers.ts")!, /io -> models/);
  assert.match(violation(join(ROOT, "bench", "x.ts"), "../tests/support/x.ts")!, /bench -> tests/);
  assert.equal(violation(join(ROOT, "tests", "x.ts"), "../bench/det.ts"), null);
  assert.match(violation(join(ROOT, "newdir", "x.ts"), "../util/rng.ts")!, /missing from ALLOWED/);
});

Deno.test("layers: the table of allowed imports has no cycle, and the cycle finder finds one", () => {
  assert.deepEqual(findCycle(ALLOWED), null);
  assert.deepEqual(findCycle({ a: ["b"], b: ["c"], c: ["a"] }), ["a", "b", "c", "a"]);
  for (const [from, to] of Object.entries(ALLOWED)) {
    for (const t of to) assert.ok(t in ALLOWED, `${from} -> ${t}: ${t} is not in the table`);
  }
});

Deno.test("layers: every import between folders is in the table, and folders import one way", async () => {
  const { files, edges, problems } = await scan();
  assert.ok(files >= 100, `only ${files} files read`);
  assert.deepEqual(problems, [], problems.join("\n"));
  const graph = Object.fromEntries([...edges].map(([k, v]) => [k, [...v]]));
  assert.equal(findCycle(graph), null, `a folder cycle: ${findCycle(graph)?.join(" -> ")}`);
  for (const folder of ["models", "training", "data", "ops", "io", "bench", "web", "run"]) {
    assert.ok(edges.has(folder), `no import of ${folder}/ read`);
  }
});
