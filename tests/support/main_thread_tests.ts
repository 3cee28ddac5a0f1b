/**
 * Runs the `Deno.test` cases of test modules with `deno run`, on the process's main thread, and
 * prints a summary line in `deno test`'s format (`ok | 7 passed | 0 failed`); exits 1 when a test
 * fails.
 *
 * Why not `deno test`: it runs each module on a thread of its own, and when that thread has used
 * wgpu's OpenGL backend, libglvnd's libEGL keeps per-thread state that the thread's exit and
 * libEGL's destructor at process exit free in a race (issue 22, `bench/egl_exit_race.sh`): the
 * process can abort after every test passed. Under `deno run` every EGL call is made on the main
 * thread, whose state is never freed that way. `tests/kernels_gl_backend_test.ts` runs its OpenGL
 * child through this file.
 *
 * Supported: the `Deno.test` call forms, `ignore` and `only`. A test that asks for
 * `permissions` or calls `t.step` fails with a message (this runner has neither).
 *
 * Usage: `deno run <permissions> tests/support/main_thread_tests.ts MODULE...`
 *
 * @module
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

type Fn = (t: Deno.TestContext) => void | Promise<void>;
type Definition = { name: string; fn: Fn; ignore?: boolean; only?: boolean; permissions?: unknown };
type Options = Omit<Deno.TestDefinition, "fn" | "name">;

/** One test definition from any of the `Deno.test` call forms. */
function definition(a: unknown, b?: unknown, c?: unknown): Definition {
  if (typeof a === "function") return { name: a.name, fn: a as Fn };
  if (typeof a === "string") {
    return typeof b === "function"
      ? { name: a, fn: b as Fn }
      : { ...(b as Options), name: a, fn: c as Fn };
  }
  if (typeof b === "function") {
    const options = a as Options & { name?: string };
    return { ...options, name: options.name ?? b.name, fn: b as Fn };
  }
  return a as Definition;
}

const tests: Definition[] = [];
/** A `Deno.test` stand-in that collects, with `extra` (`ignore`, `only`) set on each definition. */
const collect = (extra: Partial<Definition>) => (a: unknown, b?: unknown, c?: unknown) => {
  tests.push({ ...definition(a, b, c), ...extra });
};
// `Deno.test` is read-only in Deno's types and writable at run time; this collects instead.
Object.defineProperty(Deno, "test", {
  value: Object.assign(collect({}), {
    ignore: collect({ ignore: true }),
    only: collect({ only: true }),
  }),
});

const modules = Deno.args;
if (modules.length === 0) {
  console.error("usage: deno run <permissions> tests/support/main_thread_tests.ts MODULE...");
  Deno.exit(2);
}
for (const module of modules) await import(pathToFileURL(resolve(module)).href);

const only = tests.some((t) => t.only);
const started = performance.now();
let passed = 0, failed = 0, ignored = 0;
for (const test of tests) {
  if (test.ignore || (only && !test.only)) {
    ignored++;
    console.log(`${test.name} ... ignored`);
    continue;
  }
  const t0 = performance.now();
  try {
    if (test.permissions !== undefined) {
      throw new Error("per-test permissions are not supported by main_thread_tests.ts");
    }
    const context = {
      name: test.name,
      origin: modules.join(" "),
      step: () => Promise.reject(new Error("t.step is not supported by main_thread_tests.ts")),
    } as unknown as Deno.TestContext;
    await test.fn(context);
    passed++;
    console.log(`${test.name} ... ok (${Math.round(performance.now() - t0)}ms)`);
  } catch (e) {
    failed++;
    console.log(`${test.name} ... FAILED (${Math.round(performance.now() - t0)}ms)`);
    console.error(e);
  }
}
const seconds = Math.round((performance.now() - started) / 1000);
const ignoredPart = ignored > 0 ? ` | ${ignored} ignored` : "";
console.log(
  `${
    failed > 0 ? "FAILED" : "ok"
  } | ${passed} passed | ${failed} failed${ignoredPart} (${seconds}s)`,
);
Deno.exit(failed > 0 ? 1 : 0);
