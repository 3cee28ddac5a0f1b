/**
 * The layer split: models, training, data and the backend-neutral ops never import the WebGPU
 * layer (`webgpu/`) or tfjs's webgpu backend. Every import of every TypeScript file in those
 * folders is parsed (static imports, re-exports, side-effect imports, dynamic imports, and the
 * imports of doc examples, which `deno test --doc` runs) and resolved against the file.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
/** Folders that must not depend on the WebGPU layer. */
const NEUTRAL = ["models", "training", "data", "ops"];
/** Where the WebGPU layer lives. */
const WEBGPU = ["webgpu"];

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
 * Why an import crosses into the WebGPU layer, or `null`.
 *
 * @param file the importing file (absolute)
 * @param specifier the module specifier
 * @returns the reason, or `null` when the import is allowed
 */
function crossing(file: string, specifier: string): string | null {
  if (specifier.includes("tfjs-backend-webgpu")) return "names tfjs's webgpu backend";
  if (!specifier.startsWith(".")) return null;
  const target = relative(ROOT, resolve(dirname(file), specifier));
  const top = target.split(/[\\/]/)[0];
  return WEBGPU.includes(top) ? `imports ${target}` : null;
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) yield* sources(path);
    else if (e.isFile && /\.(ts|tsx|js|mjs)$/.test(e.name)) yield path;
  }
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
  const bad = found.filter((f) => crossing(file, f.specifier) !== null).length;
  assert.equal(bad, 6, "five imports of webgpu/ and one of tfjs's webgpu backend");
  assert.equal(crossing(file, "../ops/conv.ts"), null);
  assert.equal(crossing(file, "./webgpu_notes.ts"), null, "a file of models/ named webgpu_*");
});

Deno.test("layers: models, training, data and ops never import the WebGPU layer", async () => {
  const problems: string[] = [];
  let files = 0;
  for (const folder of NEUTRAL) {
    for await (const file of sources(join(ROOT, folder))) {
      files++;
      const text = await Deno.readTextFile(file);
      for (const { specifier, line } of importsOf(text)) {
        const why = crossing(file, specifier);
        if (why) problems.push(`${relative(ROOT, file)}:${line} ${why} ("${specifier}")`);
      }
    }
  }
  assert.ok(files >= 20, `only ${files} files read`);
  assert.deepEqual(problems, [], problems.join("\n"));
});
