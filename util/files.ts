/**
 * File writing shared by run folders, checkpoints and exports: every write is atomic, and a write
 * that fails (a full disk, a missing permission, an I/O error) is a {@link WriteError}, one line
 * naming the file and the cause, with no temporary file left behind.
 *
 * @module
 */
import { UserError } from "./errors.ts";

/** A failed write: one line naming the file and the cause (the entry points print it as is). */
export class WriteError extends UserError {
  /** The file that was not written. */
  readonly path: string;
  /** The cause in words, e.g. `no space left on device (os error 28)`. */
  readonly reason: string;
  /** Whether freeing space would fix it. */
  readonly noSpace: boolean;

  /**
   * @param path the file that was not written
   * @param cause what the write threw
   * @param intact what is kept, said after the cause (e.g. `the checkpoint of epoch 3 is intact`)
   */
  constructor(path: string, cause: unknown, intact = "its previous content, if any, is intact") {
    const reason = writeFailureReason(cause);
    super(`${path}: ${reason}; ${intact}`);
    this.name = "WriteError";
    this.path = path;
    this.reason = reason;
    this.noSpace = /os error 28\b|no space left/i.test(reason);
  }
}

/**
 * The cause of a failed write in words, without the temporary file's name Deno appends: `No
 * space left on device (os error 28): writefile 'x.tmp-1'` gives `no space left on device (os
 * error 28)`.
 *
 * @param cause what the write threw
 * @returns one line
 */
export function writeFailureReason(cause: unknown): string {
  const message = cause instanceof Error ? cause.message : String(cause);
  const first = message.split("\n")[0].replace(/: (writefile|rename|open|write)\b.*$/i, "").trim();
  return first.charAt(0).toLowerCase() + first.slice(1);
}

/** Writes a whole file: `Deno.writeFile`, or the test seam's writer ({@link setFileWriter}). */
export type FileWriter = (path: string, bytes: Uint8Array) => Promise<void>;

let writer: FileWriter | null = null;

/**
 * A test seam: every {@link writeFileAtomic} writes its temporary file through `fn` (which may
 * write part of the bytes and throw, as a full disk does), until called with `null`.
 *
 * @param fn the writer, or `null` for `Deno.writeFile`
 */
export function setFileWriter(fn: FileWriter | null): void {
  writer = fn;
}

/**
 * Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename; the
 * temporary file is removed when either fails, and the failure is a {@link WriteError}.
 *
 * @param path the destination
 * @param bytes the content
 * @param options `before`: called between the write and the rename (the run folder keeps the
 * previous checkpoint there); `intact`: what the error says is kept
 * @throws {WriteError} naming `path` and the cause
 */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
  options: { before?: () => Promise<void>; intact?: string } = {},
): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await (writer ?? Deno.writeFile)(tmp, bytes);
    await options.before?.();
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    if (e instanceof Deno.errors.NotCapable) throw e; // a missing --allow-write: runCli's line
    throw new WriteError(path, e, options.intact);
  }
}
