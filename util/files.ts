/**
 * File writing shared by run folders, checkpoints and exports.
 *
 * @module
 */

/**
 * Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename; the
 * temporary file is removed when either fails.
 *
 * @param path the destination
 * @param bytes the content
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
