/**
 * CIFAR-10 and CIFAR-100 in their official binary layout. A file is a run of fixed-size records:
 * the label byte(s) (CIFAR-10: one; CIFAR-100: coarse then fine) and 3,072 pixel bytes holding
 * the 32x32 red plane, then green, then blue. Files are read in chunks straight into one
 * preallocated pixel array (converted to HWC on the way), so loading costs the pixel bytes plus
 * one chunk buffer: no per-record objects and no whole-file copy.
 *
 * @module
 */
import { join } from "node:path";
import { UserError } from "../util/errors.ts";
import { type ImageDataset, makeDataset } from "./dataset.ts";

/** The CIFAR variants the toolkit reads. */
export const CIFAR_VARIANTS = ["cifar10", "cifar100"] as const;
/** `cifar10` or `cifar100`. */
export type CifarVariant = typeof CIFAR_VARIANTS[number];

/** Side of a CIFAR image in pixels. */
export const CIFAR_SIZE = 32;
/** Pixel bytes of one CIFAR record (3 planes of 32x32). */
export const CIFAR_PIXEL_BYTES = CIFAR_SIZE * CIFAR_SIZE * 3;

/** What differs between CIFAR-10 and CIFAR-100 on disk. */
export interface CifarLayout {
  /** Human name for messages. */
  readonly title: string;
  /** Folder the official archive extracts to. */
  readonly folderName: string;
  /** Training files, in order. */
  readonly trainFiles: readonly string[];
  /** Test files. */
  readonly testFiles: readonly string[];
  /** Label bytes before the pixels of each record; the last one is the label used. */
  readonly labelBytes: number;
  /** Number of classes of the label used. */
  readonly classCount: number;
  /** Text file with one class name a line, in label order. */
  readonly namesFile: string;
  /** Class names used when `namesFile` is absent. */
  readonly defaultNames: readonly string[];
}

const CIFAR10_NAMES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
] as const;

// The fine labels of CIFAR-100 are in alphabetical order, as in fine_label_names.txt.
const CIFAR100_NAMES = (
  "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus " +
  "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch " +
  "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo " +
  "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse " +
  "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy " +
  "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper " +
  "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television " +
  "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split(" ");

/** The on-disk layout of each variant. */
export const CIFAR_LAYOUTS: Readonly<Record<CifarVariant, CifarLayout>> = {
  cifar10: {
    title: "CIFAR-10",
    folderName: "cifar-10-batches-bin",
    trainFiles: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`),
    testFiles: ["test_batch.bin"],
    labelBytes: 1,
    classCount: 10,
    namesFile: "batches.meta.txt",
    defaultNames: CIFAR10_NAMES,
  },
  cifar100: {
    title: "CIFAR-100",
    folderName: "cifar-100-binary",
    trainFiles: ["train.bin"],
    testFiles: ["test.bin"],
    labelBytes: 2,
    classCount: 100,
    namesFile: "fine_label_names.txt",
    defaultNames: CIFAR100_NAMES,
  },
};

/**
 * Bytes of one record of a variant: label bytes plus 3,072 pixel bytes.
 *
 * @param variant `cifar10` (3,073) or `cifar100` (3,074)
 * @returns the record size in bytes
 * @example
 * ```ts
 * import { cifarRecordSize } from "./cifar.ts";
 * console.log(cifarRecordSize("cifar10")); // 3073
 * ```
 */
export function cifarRecordSize(variant: CifarVariant): number {
  return layoutOf(variant).labelBytes + CIFAR_PIXEL_BYTES;
}

/** Options of {@link readCifarFile}. */
export interface ReadCifarOptions {
  /** Which record layout the file has. */
  variant: CifarVariant;
}

/**
 * Reads one CIFAR binary file into a dataset (32x32 RGB, HWC), with the variant's default class
 * names. Throws a {@link UserError} naming the file when its size is not a whole number of
 * records or a label is out of range.
 *
 * @param path the `.bin` file
 * @param options the variant
 * @returns the file's images and labels
 * @example
 * ```ts ignore
 * import { readCifarFile } from "./cifar.ts";
 * const ds = await readCifarFile("data/cifar-10-batches-bin/test_batch.bin", { variant: "cifar10" });
 * console.log(ds.size); // 10000
 * ```
 */
export async function readCifarFile(
  path: string,
  options: ReadCifarOptions,
): Promise<ImageDataset> {
  const layout = layoutOf(options.variant);
  const count = await recordCount(path, options.variant);
  const pixels = new Uint8Array(count * CIFAR_PIXEL_BYTES);
  const labels = new Int32Array(count);
  await readRecordsInto(path, options.variant, count, pixels, labels, 0);
  return makeDataset({
    classNames: layout.defaultNames,
    size: count,
    height: CIFAR_SIZE,
    width: CIFAR_SIZE,
    pixels,
    labels,
    source: path,
  });
}

/** Options of {@link loadCifar}. */
export interface LoadCifarOptions {
  /** Which variant the folder holds. */
  variant: CifarVariant;
  /** `train` (all training batch files found) or `test`. */
  split: "train" | "test";
  /** Where warnings go; `console.error` when absent, nowhere when `null`. */
  log?: ((line: string) => void) | null;
}

/**
 * Loads one split of CIFAR-10/100 from a folder that holds the `.bin` files directly or holds
 * the extracted folder (`cifar-10-batches-bin/` or `cifar-100-binary/`). A training folder with
 * only some of CIFAR-10's five batch files loads those, with a warning giving the count. Class
 * names come from `batches.meta.txt` / `fine_label_names.txt` when present.
 *
 * @param dir the data folder
 * @param options variant, split and log
 * @returns the split as one dataset of 32x32 images
 * @example
 * ```ts ignore
 * import { loadCifar } from "./cifar.ts";
 * const test = await loadCifar("data", { variant: "cifar10", split: "test" });
 * console.log(test.size, test.classNames[0]); // 10000 "airplane"
 * ```
 */
export async function loadCifar(dir: string, options: LoadCifarOptions): Promise<ImageDataset> {
  const layout = layoutOf(options.variant);
  const log = options.log === undefined ? (line: string) => console.error(line) : options.log;
  const folder = await resolveCifarFolder(dir, options.variant);
  const wanted = options.split === "train" ? layout.trainFiles : layout.testFiles;
  const present: string[] = [];
  for (const name of wanted) {
    if (await isFile(join(folder, name))) present.push(name);
  }
  if (present.length === 0) {
    throw new UserError(
      `${folder}: no ${layout.title} ${options.split} file found (expected ${wanted.join(", ")})`,
    );
  }
  if (present.length < wanted.length) {
    log?.(
      `warning: ${folder}: using ${present.length} of ${wanted.length} training batch files ` +
        `(${present.join(", ")})`,
    );
  }
  const paths = present.map((name) => join(folder, name));
  const counts: number[] = [];
  for (const path of paths) counts.push(await recordCount(path, options.variant));
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) throw new UserError(`${folder}: the ${layout.title} files hold no records`);
  const pixels = new Uint8Array(total * CIFAR_PIXEL_BYTES);
  const labels = new Int32Array(total);
  let first = 0;
  for (let f = 0; f < paths.length; f++) {
    await readRecordsInto(paths[f], options.variant, counts[f], pixels, labels, first);
    first += counts[f];
  }
  return makeDataset({
    classNames: await readClassNames(folder, layout),
    size: total,
    height: CIFAR_SIZE,
    width: CIFAR_SIZE,
    pixels,
    labels,
    source: folder,
  });
}

/**
 * The folder that holds a variant's `.bin` files: `dir` itself when it holds one of them,
 * else `dir/<folderName>` when that exists. Throws a {@link UserError} naming `dir` otherwise.
 *
 * @param dir the folder given by the user
 * @param variant which variant to look for
 * @returns the folder with the `.bin` files
 * @example
 * ```ts ignore
 * import { resolveCifarFolder } from "./cifar.ts";
 * console.log(await resolveCifarFolder("data", "cifar10")); // "data/cifar-10-batches-bin"
 * ```
 */
export async function resolveCifarFolder(dir: string, variant: CifarVariant): Promise<string> {
  const layout = layoutOf(variant);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(`data folder ${dir} does not exist`);
    }
    throw e;
  }
  if (!info.isDirectory) throw new UserError(`data folder ${dir} is not a folder`);
  const names = [...layout.trainFiles, ...layout.testFiles];
  for (const name of names) {
    if (await isFile(join(dir, name))) return dir;
  }
  const inner = join(dir, layout.folderName);
  for (const name of names) {
    if (await isFile(join(inner, name))) return inner;
  }
  throw new UserError(
    `${dir}: no ${layout.title} files (expected ${names.join(", ")} there or in ` +
      `${layout.folderName}/)`,
  );
}

function layoutOf(variant: CifarVariant): CifarLayout {
  const layout = (CIFAR_LAYOUTS as Record<string, CifarLayout | undefined>)[variant];
  if (!layout) {
    throw new UserError(`unknown CIFAR variant "${variant}"; valid: ${CIFAR_VARIANTS.join(", ")}`);
  }
  return layout;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Number of records of a file, checking that its size is a whole number of records. */
async function recordCount(path: string, variant: CifarVariant): Promise<number> {
  const layout = layoutOf(variant);
  const rec = cifarRecordSize(variant);
  let size: number;
  try {
    size = (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: file not found`);
    throw e;
  }
  if (size % rec !== 0) {
    throw new UserError(
      `${path}: size ${size} bytes is not a multiple of the ${rec}-byte ${layout.title} record ` +
        `(${layout.labelBytes} label byte${layout.labelBytes > 1 ? "s" : ""} + ` +
        `${CIFAR_PIXEL_BYTES} pixel bytes); the file is truncated or not a ${layout.title} file`,
    );
  }
  return size / rec;
}

/** Records per read: about 1 MiB a chunk. */
const CHUNK_RECORDS = 341;

/**
 * Streams `count` records of `path` into `pixels`/`labels` starting at image `first`,
 * turning each record's R, G, B planes into HWC pixels.
 */
async function readRecordsInto(
  path: string,
  variant: CifarVariant,
  count: number,
  pixels: Uint8Array,
  labels: Int32Array,
  first: number,
): Promise<void> {
  const layout = layoutOf(variant);
  const rec = cifarRecordSize(variant);
  const lb = layout.labelBytes;
  const plane = CIFAR_SIZE * CIFAR_SIZE;
  const chunk = new Uint8Array(Math.min(CHUNK_RECORDS, Math.max(count, 1)) * rec);
  using file = await Deno.open(path, { read: true });
  let done = 0;
  while (done < count) {
    const want = Math.min(CHUNK_RECORDS, count - done) * rec;
    let filled = 0;
    while (filled < want) {
      const n = await file.read(chunk.subarray(filled, want));
      if (n === null) {
        throw new UserError(
          `${path}: file ended after ${done * rec + filled} bytes, expected ${count * rec}`,
        );
      }
      filled += n;
    }
    const records = want / rec;
    for (let r = 0; r < records; r++) {
      const src = r * rec;
      const index = done + r;
      // CIFAR-100: byte 0 is the coarse label (20 classes), byte 1 the fine label used here.
      if (lb === 2 && chunk[src] >= 20) {
        throw new UserError(
          `${path}: record ${index} has coarse label ${chunk[src]}, expected 0..19`,
        );
      }
      const label = chunk[src + lb - 1];
      if (label >= layout.classCount) {
        throw new UserError(
          `${path}: record ${index} has label ${label}, expected 0..${layout.classCount - 1} ` +
            `(is this a ${layout.title} file?)`,
        );
      }
      labels[first + index] = label;
      const r0 = src + lb, g0 = r0 + plane, b0 = g0 + plane;
      let out = (first + index) * CIFAR_PIXEL_BYTES;
      for (let p = 0; p < plane; p++) {
        pixels[out] = chunk[r0 + p];
        pixels[out + 1] = chunk[g0 + p];
        pixels[out + 2] = chunk[b0 + p];
        out += 3;
      }
    }
    done += records;
  }
}

/** Class names from the variant's names file when present, else the built-in list. */
async function readClassNames(folder: string, layout: CifarLayout): Promise<readonly string[]> {
  const path = join(folder, layout.namesFile);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return layout.defaultNames;
    throw e;
  }
  const names = text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length !== layout.classCount) {
    throw new UserError(
      `${path}: ${names.length} class names, expected ${layout.classCount} (one a line)`,
    );
  }
  return names;
}
