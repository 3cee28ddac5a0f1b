import assert from "node:assert/strict";
import { type FlagSpec, helpText, parseFlags, permissionHint } from "../cli/args.ts";
import { denoRunLine, TASK_PERMISSIONS } from "../util/errors.ts";
import { UserError } from "../util/errors.ts";

const SPECS: Record<string, FlagSpec> = {
  "epochs": { kind: "int", help: "epochs" },
  "seed": { kind: "uint", help: "seed" },
  "lr": { kind: "number", help: "learning rate" },
  "lr-steps": { kind: "ints", help: "steps" },
  "model": { kind: "choice", choices: ["a", "b"], help: "model" },
  "augment": { kind: "bool", help: "augment" },
};

Deno.test("flags: kinds are converted and checked", () => {
  const { values } = parseFlags(
    [
      "--epochs",
      "3",
      "--seed",
      "0",
      "--lr",
      "0.01",
      "--lr-steps",
      "80,120",
      "--model",
      "b",
      "--augment",
    ],
    SPECS,
  );
  assert.deepEqual(values, {
    epochs: 3,
    seed: 0,
    lr: 0.01,
    "lr-steps": [80, 120],
    model: "b",
    augment: true,
  });
  assert.deepEqual(parseFlags(["--lr-steps", "none"], SPECS).values["lr-steps"], []);
});

Deno.test("flags: bad values and unknown flags are one-line errors listing what is valid", () => {
  const fails = (args: string[], pattern: RegExp) =>
    assert.throws(
      () => parseFlags(args, SPECS),
      (e: Error) => e instanceof UserError && pattern.test(e.message) && !e.message.includes("\n"),
    );
  fails(["--epochs", "0"], /--epochs: expected a positive integer, got "0"/);
  fails(["--seed", "-1"], /--seed: expected a non-negative integer/);
  fails(["--lr", "fast"], /--lr: expected a non-negative number/);
  fails(["--lr-steps", "8,x"], /--lr-steps: expected a comma-separated list/);
  fails(["--model", "c"], /--model: expected one of a, b, got "c"/);
  fails(
    ["--bogus"],
    /unknown flag --bogus; valid flags: --epochs, --seed, --lr, --lr-steps, --model, --augment/,
  );
});

Deno.test("flags: help lists every flag, with the choices", () => {
  const text = helpText("usage: x", SPECS);
  for (const name of Object.keys(SPECS)) assert.match(text, new RegExp(`--${name}\\b`));
  assert.match(text, /--model <name> +model: a, b/);
});

Deno.test("a missing permission names the deno run line, not a flag the task would reject", () => {
  const hint = permissionHint(
    'Requires write access to "/tmp/grid.png", run again with the --allow-write flag',
    "train.ts",
  );
  assert.ok(!hint.includes("run again with"), hint);
  assert.match(hint, /^no write permission for \/tmp\/grid\.png /);
  assert.match(hint, /run deno run --allow-read --allow-write=\/tmp\/grid\.png,runs,data /);
  const other = "Requires read access to x";
  assert.equal(permissionHint(other), other, "other messages are kept");
  const bench = 'Requires write access to "x", run again with the --allow-write flag';
  assert.equal(permissionHint(bench, "bench.ts"), bench, "no task line for scripts without one");
});

Deno.test("the suggested deno run line grants what the entry point's task grants", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  for (const script of Object.keys(TASK_PERMISSIONS)) {
    const task = Object.values(config.tasks as Record<string, string>)
      .find((t) => t.startsWith("deno run ") && t.endsWith(` ${script}`));
    assert.ok(task, `a deno task runs ${script}`);
    assert.equal(`${denoRunLine(script)}`, `${task} ...`, script);
  }
  assert.equal(
    denoRunLine("export.ts", "/tmp/m"),
    "deno run --allow-read --allow-write=/tmp/m,runs export.ts ...",
  );
});
