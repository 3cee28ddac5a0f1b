/**
 * The test command: `deno task test` runs the whole suite (`deno test --doc`) with the permission
 * flags the task names, scoped as the suite needs and no wider; README and CI use that command.
 * The same permissions are declared under "test" in deno.json for `deno test -P tests/<file>`
 * (which Deno 2.9 reads only with `-P`, printing its experimental-feature warning; the task's
 * flags print nothing).
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";

const ROOT = fromFileUrl(new URL("..", import.meta.url));
const TEST_COMMAND = "deno task test";

/**
 * The permissions a list of `--allow-*` flags grants, in deno.json's `test.permissions` shape.
 *
 * @param command a `deno test` command line
 * @returns each permission: `true`, or the list it is scoped to
 */
function permissionsOf(command: string): Record<string, true | string[]> {
  const out: Record<string, true | string[]> = {};
  for (const arg of command.split(/\s+/)) {
    const m = arg.match(/^--allow-(\w+)(?:=(.*))?$/);
    if (m) out[m[1]] = m[2] === undefined ? true : m[2].split(",");
  }
  return out;
}

interface DenoJson {
  tasks: Record<string, string>;
  allowScripts?: { deny?: string[] };
  test?: { include?: string[]; permissions?: Record<string, unknown> };
}

const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)) as DenoJson;

Deno.test("deno.json declares the suite's permissions, scoped, and the files it tests", async () => {
  const perms = config.test?.permissions;
  assert.ok(perms, 'deno.json has "test": { "permissions": ... }');
  assert.deepEqual(perms, {
    read: true,
    write: [".test-tmp"],
    net: ["127.0.0.1"],
    // The browser tests start the system's Chromium (tests/support/chromium.ts); puppeteer-core
    // reads the variables after DENO_WEBGPU_BACKEND (backend/backend.ts vulkanWhereItWorks).
    run: ["deno", "/usr/bin/chromium-headless-shell"],
    env: [
      "DENO_DIR",
      "HOME",
      "XDG_CACHE_HOME",
      "XDG_RUNTIME_DIR",
      "DENO_WEBGPU_BACKEND",
      "WS_NO_BUFFER_UTIL",
      "PUPPETEER_TEST_EXPERIMENTAL_CHROME_FEATURES",
      "PUPPETEER_DANGEROUS_NO_SANDBOX",
      "TMPDIR",
      "TMP",
      "TEMP",
      "NODE_V8_COVERAGE",
    ],
  });
  // Every top-level folder of TypeScript sources (but the benchmark's) and mod.ts is tested.
  const include = config.test!.include ?? [];
  for await (const e of Deno.readDir(ROOT)) {
    if (!e.isDirectory || e.name.startsWith(".") || ["bench", "runs", "data"].includes(e.name)) {
      continue;
    }
    let hasTs = false;
    for await (const f of Deno.readDir(`${ROOT}${e.name}`)) hasTs ||= f.name.endsWith(".ts");
    if (hasTs) assert.ok(include.includes(`${e.name}/`), `test.include lists ${e.name}/`);
  }
  assert.ok(include.includes("mod.ts"));
  // npm install scripts we never run (there is no node_modules folder to run them in), denied by
  // name so that a first run on a fresh cache prints no "Ignored build scripts" box.
  assert.deepEqual(config.allowScripts?.deny, ["npm:core-js", "npm:protobufjs"]);
  // The task is `deno test --doc` with the same permissions as flags (no `-P`: no warning).
  assert.match(config.tasks.test, /^deno test (--allow-\S+ )+--doc$/);
  assert.deepEqual(permissionsOf(config.tasks.test), perms);
  assert.ok(config.tasks.ok.endsWith(`&& ${TEST_COMMAND}`), config.tasks.ok);
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  assert.ok(readme.includes("```sh\n" + TEST_COMMAND), "README shows the test command");
  assert.match(await Deno.readTextFile(`${ROOT}.ci/run`), /^deno task ok /m);
});

Deno.test("deno task test grants exactly those permissions, and prints no warning", async () => {
  const flags = config.tasks.test.split(/\s+/).filter((a) => a.startsWith("--allow-"));
  const out = await new Deno.Command("deno", {
    args: ["test", ...flags, "--no-check", "tests/support/permissions_probe.ts"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.doesNotMatch(stderr, /Warning|experimental/, stderr);
  const line = stdout.split("\n").find((l) => l.startsWith("{"));
  assert.ok(line, stdout);
  assert.deepEqual(JSON.parse(line), {
    read: "granted",
    writeTmp: "granted",
    writeElsewhere: "prompt",
    net: "granted",
    netElsewhere: "prompt",
    run: "granted",
  });
});
