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
