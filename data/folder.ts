/**
 * A user's own image dataset in torchvision `ImageFolder` layout: `DIR/train/<class>/*` and
 * `DIR/test/<class>/*`, or one folder `DIR/<class>/*` split into train and test by a seeded
 * fraction. Classes are sorted by name, files are walked recursively in sorted order (as
 * `ImageFolder` does), JPEG and PNG images of any size and color type are decoded to RGB and
 * resized (PIL-style antialiased bilinear) to the model's input size.
 *
 * @module
 */
import { extname, join, relative } from "node:path";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { type ImageDataset, makeDataset } from "./dataset.ts";
import { decodeResized, sniffImageFormat } from "./image.ts";

/** File extensions read as images (case-insensitive). */
export const IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png"] as const;

/** Options of {@link loadImageFolder}. */
export interface LoadImageFolderOptions {
  /** Which split to load. */
  split: "train" | "test";
  /** Side of the square images stored in the dataset (32 for the ResNets, 224 for RegNet). */
  inputSize: number;
  /**
   * For the single-folder layout: the fraction of each class held out as the test split
   * (0.2 when absent). Ignored when `DIR/train/` exists.
   */
  valSplit?: number;
  /** Seed of the single-folder split (0 when absent). */
  seed?: number;
  /** Skip unreadable or truncated images, reporting a count, instead of failing. */
  skipBadImages?: boolean;
  /** Where warnings go; `console.error` when absent, nowhere when `null`. */
  log?: ((line: string) => void) | null;
}

/**
 * Loads one split of an image folder as a dataset of `inputSize x inputSize` RGB images.
 * Throws a one-line {@link UserError} for a missing folder, a class folder without images, or an
 * unreadable image (naming it; `skipBadImages` skips those and logs a count). Files that are not
 * JPEG or PNG images are ignored with a warning.
 *
 * @param dir the dataset folder
 * @param options split, size, split fraction and seed, bad-image handling, log
 * @returns the split
 * @example
 * ```ts ignore
 * import { loadImageFolder } from "./folder.ts";
 * const train = await loadImageFolder("meat", { split: "train", inputSize: 224 });
 * console.log(train.classNames, train.size);
 * ```
 */
export async function loadImageFolder(
  dir: string,
  options: LoadImageFolderOptions,
): Promise<ImageDataset> {
  const log = options.log === undefined ? (line: string) => console.error(line) : options.log;
  const size = options.inputSize;
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new UserError(`inputSize: expected a positive integer, got ${size}`);
  }
  await requireFolder(dir, "data folder");
  const ignored: string[] = [];
  let classNames: string[];
  let files: { path: string; label: number }[];

  if (await isDirectory(join(dir, "train"))) {
    const trainDir = join(dir, "train");
    classNames = await classFolders(trainDir);
    const splitDir = join(dir, options.split);
    await requireFolder(
      splitDir,
      `${options.split} folder (with DIR/train/ there must be DIR/test/)`,
    );
    const present = await classFolders(splitDir);
    for (const name of present) {
      if (!classNames.includes(name)) {
        throw new UserError(
          `${join(splitDir, name)}: class "${name}" is not in ${trainDir} ` +
            `(classes there: ${classNames.join(", ")})`,
        );
      }
    }
    files = [];
    for (let label = 0; label < classNames.length; label++) {
      const folder = join(splitDir, classNames[label]);
      if (!present.includes(classNames[label])) {
        log?.(`warning: ${splitDir} has no folder for class "${classNames[label]}"`);
        continue;
      }
      for (const path of await imageFiles(folder, ignored)) files.push({ path, label });
    }
  } else {
    const valSplit = options.valSplit ?? 0.2;
    if (!(valSplit >= 0 && valSplit < 1)) {
      throw new UserError(`valSplit: expected a fraction in [0, 1), got ${valSplit}`);
    }
    const seed = options.seed ?? 0;
    classNames = await classFolders(dir);
    const rng = new Rng(seed);
    files = [];
    for (let label = 0; label < classNames.length; label++) {
      const all = await imageFiles(join(dir, classNames[label]), ignored);
      // Stratified: each class gives round(n * valSplit) of its images to the test split.
      const order = rng.shuffle(Array.from(all.keys()));
      const inTest = new Set(order.slice(0, Math.round(all.length * valSplit)));
      all.forEach((path, i) => {
        if (inTest.has(i) === (options.split === "test")) files.push({ path, label });
      });
    }
    if (files.length === 0) {
      throw new UserError(
        `${dir}: valSplit ${valSplit} leaves no ${options.split} images; ` +
          `use DIR/train/ and DIR/test/ folders or another valSplit`,
      );
    }
  }
  if (ignored.length > 0) {
    const shown = ignored.slice(0, 5).map((p) => relative(dir, p) || p).join(", ");
    const more = ignored.length > 5 ? ` and ${ignored.length - 5} more` : "";
    log?.(
      `warning: ${dir}: ignored ${ignored.length} file(s) that are not JPEG or PNG images: ` +
        `${shown}${more}`,
    );
  }

  const per = size * size * 3;
  const pixels = new Uint8Array(files.length * per);
  const labels = new Int32Array(files.length);
  let count = 0;
  const bad: string[] = [];
  for (const { path, label } of files) {
    let image;
    try {
      image = decodeResized(await Deno.readFile(path), size);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (!options.skipBadImages) {
        throw new UserError(
          `${path}: unreadable or truncated image (${why}); expected a valid JPEG or PNG ` +
            `(--skip-bad-images skips such files)`,
        );
      }
      bad.push(`${path} (${why})`);
      continue;
    }
    pixels.set(image.data, count * per);
    labels[count] = label;
    count++;
  }
  if (bad.length > 0) {
    log?.(`warning: ${dir}: skipped ${bad.length} unreadable image(s), first: ${bad[0]}`);
  }
  if (count === 0) throw new UserError(`${dir}: no readable ${options.split} images`);
  return makeDataset({
    classNames,
    size: count,
    height: size,
    width: size,
    pixels: pixels.subarray(0, count * per),
    labels: labels.subarray(0, count),
    source: dir,
  });
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function requireFolder(path: string, what: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${what} ${path} does not exist`);
    throw e;
  }
  if (!info.isDirectory) throw new UserError(`${what} ${path} is not a folder`);
}

/** Sub-folder names sorted by code point, as `ImageFolder.find_classes` does. */
async function classFolders(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory || (entry.isSymlink && await isDirectory(join(dir, entry.name)))) {
      names.push(entry.name);
    }
  }
  names.sort(byCodePoint);
  if (names.length === 0) {
    throw new UserError(
      `${dir}: no class folders (expected ${dir}/<class>/*.jpg|png, one folder a class)`,
    );
  }
  return names;
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The image files under a class folder, walked recursively: folders in sorted path order and
 * files sorted within each (torchvision's `make_dataset`). Other files go to `ignored`.
 */
async function imageFiles(classDir: string, ignored: string[]): Promise<string[]> {
  const folders: { path: string; files: string[] }[] = [];
  const walk = async (path: string): Promise<void> => {
    const files: string[] = [];
    for await (const entry of Deno.readDir(path)) {
      const full = join(path, entry.name);
      if (entry.isDirectory || (entry.isSymlink && await isDirectory(full))) await walk(full);
      else files.push(entry.name);
    }
    folders.push({ path, files: files.sort(byCodePoint) });
  };
  await walk(classDir);
  folders.sort((a, b) => byCodePoint(a.path, b.path));
  const images: string[] = [];
  for (const { path, files } of folders) {
    for (const name of files) {
      const full = join(path, name);
      const ext = extname(name).toLowerCase();
      if ((IMAGE_EXTENSIONS as readonly string[]).includes(ext)) {
        images.push(full);
      } else if (ext === "" && await hasImageSignature(full)) {
        images.push(full);
      } else {
        ignored.push(full);
      }
    }
  }
  if (images.length === 0) {
    throw new UserError(
      `class folder ${classDir} has no images (expected ${IMAGE_EXTENSIONS.join(", ")} files)`,
    );
  }
  return images;
}

/** Whether a file without extension starts like a JPEG or PNG. */
async function hasImageSignature(path: string): Promise<boolean> {
  using file = await Deno.open(path, { read: true });
  const head = new Uint8Array(8);
  let n = 0;
  while (n < head.length) {
    const got = await file.read(head.subarray(n));
    if (got === null) break;
    n += got;
  }
  return sniffImageFormat(head.subarray(0, n)) !== null;
}
