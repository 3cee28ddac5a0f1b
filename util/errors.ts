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
    rest: "--allow-net=www.cs.toronto.edu --allow-env=XDG_RUNTIME_DIR,DENO_WEBGPU_BACKEND",
  },
  "eval.ts": {
    write: "runs,data",
    rest: "--allow-net=www.cs.toronto.edu --allow-env=XDG_RUNTIME_DIR,DENO_WEBGPU_BACKEND",
  },
  "export.ts": { write: "runs", rest: "" },
  "predict.ts": { write: "runs", rest: "--allow-env=XDG_RUNTIME_DIR,DENO_WEBGPU_BACKEND" },
};

/**
 * The `deno run` line that runs `script` as its task does, with `extra` added.
 *
 * @param script an entry point of {@link TASK_PERMISSIONS}, e.g. `train.ts`
 * @param write a path to allow writing besides the task's folders, if any
 * @param extra a further flag, e.g. `--allow-net=example.com`
 * @returns e.g. `deno run --allow-read --allow-write=/tmp,runs,data ... train.ts ...`
 */
export function denoRunLine(script: string, write?: string, extra = ""): string {
  const task = TASK_PERMISSIONS[script];
  const flags = [
    "--allow-read",
    `--allow-write=${write ? `${write},` : ""}${task.write}`,
    task.rest,
    extra,
  ].filter((f) => f);
  return `deno run ${flags.join(" ")} ${script} ...`;
}

/**
 * The one-line message for a permission that the task of `script` lacks, with the `deno run`
 * line that grants it.
 *
 * @param kind `write`, `net`, ...
 * @param target the path or host
 * @param script an entry point of {@link TASK_PERMISSIONS}
 * @param flag Deno's flag for `kind`, e.g. `--allow-net` (for kinds other than write)
 * @returns e.g. `no write permission for /x (deno task eval writes only under runs/ and data/);
 * run deno run ... eval.ts ... instead`
 */
export function permissionMessage(
  kind: string,
  target: string,
  script: string,
  flag = `--allow-${kind}`,
): string {
  const task = TASK_PERMISSIONS[script];
  const folders = task.write.split(",").map((f) => `${f}/`).join(" and ");
  const line = kind === "write"
    ? denoRunLine(script, target)
    : denoRunLine(script, undefined, `${flag}=${target}`);
  return `no ${kind} permission for ${target} (deno task ${
    script.replace(/\.ts$/, "")
  } writes only under ${folders}); run ${line} instead`;
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
  throw new UserError(`${flag} ${path}: ${permissionMessage("write", path, script)}`);
}
