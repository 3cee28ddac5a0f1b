/**
 * The test command: `deno test -P --doc` runs the whole suite with the permissions declared
 * under "test" in deno.json (Deno 2.9 reads them only with `-P`), scoped as the suite needs and
 * no wider; README and CI use that command.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";

const ROOT = fromFileUrl(new URL("..", import.meta.url));
const TEST_COMMAND = "deno test -P --doc";

interface DenoJson {
  tasks: Record<string, string>;
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
  assert.equal(config.tasks.test, TEST_COMMAND);
  assert.ok(config.tasks.ok.endsWith(`&& ${TEST_COMMAND}`), config.tasks.ok);
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  assert.ok(readme.includes("```sh\n" + TEST_COMMAND), "README shows the test command");
  assert.match(await Deno.readTextFile(`${ROOT}.ci/run`), /^deno task ok /m);
});

Deno.test("deno test -P grants exactly those permissions", async () => {
  const out = await new Deno.Command("deno", {
    args: ["test", "-P", "--no-check", "tests/support/permissions_probe.ts"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
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
