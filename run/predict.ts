/**
 * The file side of `predict.ts`: the images named on the command line (files, and the JPEG and PNG
 * files under folders, recursively, in sorted order), decoded and resized for the model, with a
 * one-line reason for each one that cannot be read.
 *
 * @module
 */
import { extname, join } from "node:path";
import { IMAGE_EXTENSIONS } from "../data/folder.ts";
import { decodeResized } from "../data/image.ts";

/** A path that could not be classified and why. */
export interface Unreadable {
  /** The path as given or found. */
  path: string;
  /** Why, e.g. `not a JPEG or PNG file (unknown signature)`. */
  why: string;
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The JPEG and PNG files under `dir` (by extension, case-insensitive), recursively. */
async function imagesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    let isDir = entry.isDirectory;
    if (entry.isSymlink) isDir = (await Deno.stat(path).catch(() => null))?.isDirectory ?? false;
    if (isDir) found.push(...await imagesUnder(path));
    else if ((IMAGE_EXTENSIONS as readonly string[]).includes(extname(path).toLowerCase())) {
      found.push(path);
    }
  }
  return found;
}

/**
 * The image files named by `paths`: a file is taken as it is (whatever its name), a folder gives
 * its `.jpg`, `.jpeg` and `.png` files, recursively, sorted by path. A path that does not exist
 * or cannot be listed is reported.
 *
 * @param paths files and folders, as given
 * @returns the files in order, and the paths that were not usable
 */
export async function collectImages(
  paths: string[],
): Promise<{ files: string[]; missing: Unreadable[] }> {
  const files: string[] = [];
  const missing: Unreadable[] = [];
  for (const path of paths) {
    try {
      const info = await Deno.stat(path);
      if (info.isDirectory) files.push(...(await imagesUnder(path)).sort(byCodePoint));
      else files.push(path);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound
        ? "no such file or folder"
        : `cannot read (${(e as Error).message.split("\n")[0]})`;
      missing.push({ path, why });
    }
  }
  return { files, missing };
}

/**
 * Reads, decodes and resizes each file to a `size x size` RGB square (`decodeResized`, as the
 * folder loader does).
 *
 * @param files the image files
 * @param size the side to resize to (`storedImageSize` of `training/classify.ts`)
 * @returns the pixels of the readable images back to back, their paths, and the unreadable ones
 */
export async function readImages(
  files: string[],
  size: number,
): Promise<{ pixels: Uint8Array; paths: string[]; unreadable: Unreadable[] }> {
  const per = size * size * 3;
  const pixels = new Uint8Array(files.length * per);
  const paths: string[] = [];
  const unreadable: Unreadable[] = [];
  for (const path of files) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      unreadable.push({ path, why: `cannot read (${(e as Error).message.split("\n")[0]})` });
      continue;
    }
    try {
      pixels.set(decodeResized(bytes, size).data, paths.length * per);
      paths.push(path);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      unreadable.push({ path, why: `unreadable image: ${why}` });
    }
  }
  return { pixels: pixels.subarray(0, paths.length * per), paths, unreadable };
}
