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
    `${flag} ${path}: no permission to write there (deno task train and eval write only under ` +
      `runs/ and data/); run deno run --allow-read --allow-write=${path},runs,data ` +
      `--allow-net=www.cs.toronto.edu --allow-env=XDG_RUNTIME_DIR ${script} ... instead`,
  );
}
