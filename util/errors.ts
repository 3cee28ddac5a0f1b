/**
 * Errors a user can act on: bad flags, bad files, missing data. The command-line entrypoints
 * print their message as one line, without a stack trace, and exit with a non-zero code.
 *
 * @module
 */

/** An error caused by the user's input; its message names the file or flag and what was expected. */
export class UserError extends Error {
  /**
   * @param message one line naming the file or flag and what was expected
   */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/**
 * The permission flags of each entry point's `deno task` (as in `deno.json`), for the `deno run`
 * line that an error suggests when a path lies outside them.
 */
export const TASK_PERMISSIONS: Record<string, { write: string; rest: string }> = {
  "train.ts": {
    write: "runs,data",
    rest: "--allow-net=www.cs.toronto.edu --allow-env=XDG_RUNTIME_DIR",
  },
  "eval.ts": {
    write: "runs,data",
    rest: "--allow-net=www.cs.toronto.edu --allow-env=XDG_RUNTIME_DIR",
  },
  "export.ts": { write: "runs", rest: "" },
};

/**
 * The `deno run` line that runs `script` as its task does, with `extra` added.
 *
 * @param script the entry point, e.g. `train.ts`
 * @param write a path to allow writing besides the task's folders, if any
 * @param extra a further flag, e.g. `--allow-net=example.com`
 * @returns e.g. `deno run --allow-read --allow-write=/tmp,runs,data ... train.ts ...`
 */
export function denoRunLine(script: string, write?: string, extra = ""): string {
  const task = TASK_PERMISSIONS[script] ?? TASK_PERMISSIONS["train.ts"];
  const flags = [
    "--allow-read",
    `--allow-write=${write ? `${write},` : ""}${task.write}`,
    task.rest,
    extra,
  ].filter((f) => f);
  return `deno run ${flags.join(" ")} ${script} ...`;
}

/**
 * Where the task of `script` may write, in words.
 *
 * @param script the entry point, e.g. `eval.ts`
 * @returns e.g. `deno task eval writes only under runs/ and data/`
 */
export function taskWrites(script: string): string {
  const task = TASK_PERMISSIONS[script] ?? TASK_PERMISSIONS["train.ts"];
  const folders = task.write.split(",").map((f) => `${f}/`).join(" and ");
  return `deno task ${script.replace(/\.ts$/, "")} writes only under ${folders}`;
}

/**
 * Makes sure this process may write `path` before any work starts: where Deno would ask, it asks
 * now (on a terminal); where the permission is missing, a {@link UserError} says how to grant it.
 *
 * @param path the file or folder to write
 * @param flag the flag that named it, e.g. `--out`
 * @param script the entrypoint, e.g. `train.ts`, for the command line in the message
 */
export async function requireWrite(path: string, flag: string, script: string): Promise<void> {
  let { state } = await Deno.permissions.query({ name: "write", path });
  if (state === "prompt") ({ state } = await Deno.permissions.request({ name: "write", path }));
  if (state === "granted") return;
  throw new UserError(
    `${flag} ${path}: no permission to write there (${taskWrites(script)}); ` +
      `run ${denoRunLine(script, path)} instead`,
  );
}
