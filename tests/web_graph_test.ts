/**
 * The browser entry `web/mod.ts` loads in a browser: no module of its import graph imports
 * `node:` (or a file-side npm package) or references `Deno` at top level (outside every brace,
 * where it would run at load). The graph is `deno info --json web/mod.ts`'s.
 */
import assert from "node:assert/strict";
import { dirname, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
/** The npm packages a browser page may load (pure JavaScript). */
const BROWSER_PACKAGES = [
  "@tensorflow/tfjs",
  "@tensorflow/tfjs-backend-webgpu",
  "fflate",
  "pickleparser",
];

interface InfoModule {
  specifier: string;
  kind?: string;
  dependencies?: {
    specifier: string;
    code?: { specifier: string };
    type?: { specifier: string };
  }[];
}

/**
 * The source with comments, strings and template literals blanked (newlines kept), so that
 * braces and names are code.
 *
 * @param source TypeScript source
 * @returns the code alone
 */
function codeOnly(source: string): string {
  return source.replace(
    /\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`/g,
    (m) => m.replace(/[^\n]/g, " "),
  );
}

/**
 * The lines where `Deno` is referenced outside every brace (module top level).
 *
 * @param source TypeScript source
 * @returns 1-based line numbers
 */
function topLevelDeno(source: string): number[] {
  const code = codeOnly(source);
  const lines: number[] = [];
  let depth = 0;
  let line = 1;
  for (let i = 0; i < code.length; i++) {
    const c = code[i];
    if (c === "\n") line++;
    else if (c === "{") depth++;
    else if (c === "}") depth--;
    else if (
      depth === 0 && code.startsWith("Deno", i) && !/[\w$]/.test(code[i - 1] ?? "") &&
      !/[\w$]/.test(code[i + 4] ?? "")
    ) lines.push(line);
  }
  return lines;
}

Deno.test("web graph: the top-level Deno finder sees code, not comments or function bodies", () => {
  const source = [
    "// Deno.env in a comment",
    'const a = "Deno.build";',
    "/* Deno */ export function f() { return Deno.cwd(); }",
    "const os = Deno.build.os;",
    "class C { m() { Deno.exit(); } }",
    "const d = typeof Deno;",
    "const DenoLike = 1;",
  ].join("\n");
  assert.deepEqual(topLevelDeno(source), [4, 6]);
});

Deno.test("web graph: web/mod.ts imports no node: module, no file-side package, no top-level Deno", async () => {
  const out = await new Deno.Command("deno", {
    args: ["info", "--json", "web/mod.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
  const problems: string[] = [];
  let local = 0;
  for (const m of info.modules) {
    if (m.specifier.startsWith("node:") || m.kind === "node") {
      problems.push(`${m.specifier} in graph`);
    }
    if (m.specifier.startsWith("npm:")) {
      const pkg = m.specifier.replace(/^npm:\/?/, "").replace(/@[^@/]+$/, "");
      if (!BROWSER_PACKAGES.includes(pkg)) problems.push(`npm package ${pkg} in graph`);
      continue;
    }
    if (!m.specifier.startsWith("file:")) continue;
    local++;
    const path = new URL(m.specifier).pathname;
    const name = relative(ROOT, path);
    for (const d of m.dependencies ?? []) {
      const target = d.code?.specifier ?? d.type?.specifier ?? d.specifier;
      if (target.startsWith("node:")) problems.push(`${name} imports ${target}`);
    }
    for (const line of topLevelDeno(await Deno.readTextFile(path))) {
      problems.push(`${name}:${line} references Deno at top level`);
    }
  }
  assert.ok(local >= 30, `only ${local} local modules in the graph`);
  assert.deepEqual(problems, [], problems.join("\n"));
});

Deno.test("web graph: mod.ts's graph does import node: (the check can see one)", async () => {
  const out = await new Deno.Command("deno", {
    args: ["info", "--json", "mod.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
  const nodeImports = info.modules.flatMap((m) =>
    (m.dependencies ?? []).filter((d) => d.specifier.startsWith("node:"))
  );
  assert.ok(nodeImports.length > 0);
});
