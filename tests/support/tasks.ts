/**
 * Runs an entry point of the toolkit as `deno task NAME` would, with that task's permissions,
 * except writes, which are narrowed to `.test-tmp` (the one folder the tests may write).
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const ROOT = new URL("../../", import.meta.url);

/** What a run printed, and its exit code. */
export interface TaskOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The `--allow-...` flags of a task of deno.json, writes narrowed to `.test-tmp`.
 *
 * @param task the task's name
 * @returns its permission flags, and the script it runs
 */
export async function taskPermissions(task: string): Promise<{ flags: string[]; script: string }> {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks as Record<
    string,
    string
  >;
  const words = tasks[task].split(/\s+/);
  const flags = words.filter((a) => a.startsWith("--allow-"))
    .map((f) => f.startsWith("--allow-write") ? "--allow-write=.test-tmp" : f);
  const script = words.find((w) => w.endsWith(".ts"));
  if (!script) throw new Error(`task ${task} runs no .ts file`);
  return { flags, script: fileURLToPath(new URL(script, ROOT)) };
}

/**
 * Runs the script of `task` with the task's permissions (writes only to `.test-tmp`).
 *
 * @param task the task's name (`predict`, `eval`, ...)
 * @param args its command-line arguments
 * @returns the exit code and output
 */
export async function runTask(task: string, args: string[]): Promise<TaskOutput> {
  const { flags, script } = await taskPermissions(task);
  const out = await new Deno.Command("deno", {
    args: ["run", "--no-prompt", ...flags, script, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
