/**
 * Fetches the official CIFAR binary archives when they are absent. The download streams to
 * `<archive>.partial` (resumed with an HTTP range request when a partial file is left from an
 * earlier run), is MD5-checked, and only then renamed to its final name; the archive is
 * gunzipped and untarred as a stream into a temporary folder that is renamed into place once
 * complete. So an interrupted or corrupted run never leaves files that a later run would trust.
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { Readable } from "node:stream";
import { basename, dirname, join, normalize } from "node:path";
import { tarStream } from "../deno_deps.ts";
import { UserError } from "../util/errors.ts";
import { CIFAR_LAYOUTS, cifarRecordSize, type CifarVariant } from "./cifar.ts";

/** The official archive of each variant and its MD5. */
export const CIFAR_ARCHIVES: Readonly<Record<CifarVariant, { url: string; md5: string }>> = {
  cifar10: {
    url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5: "c32a1d4ab5d03f1284b67883e8d87530",
  },
  cifar100: {
    url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    md5: "03b5dce01913d631647c71ecec9e9cb8",
  },
};

/** Options of {@link ensureCifar}. */
export interface EnsureCifarOptions {
  /** Which dataset. */
  variant: CifarVariant;
  /** Archive URL; the official one when absent. */
  url?: string;
  /** Expected MD5 of the archive (hex); the official one when absent. */
  md5?: string;
  /** Progress and warnings; `console.error` when absent, nowhere when `null`. */
  log?: ((line: string) => void) | null;
  /** The `fetch` to use; `globalThis.fetch` when absent. */
  fetchFn?: typeof fetch;
}

/**
 * Makes sure `rootDir/<cifar-10-batches-bin | cifar-100-binary>/` holds the variant's `.bin`
 * files, downloading and extracting the archive when they are absent. With the files present it
 * does no request. A checksum mismatch removes the download and throws a {@link UserError}.
 *
 * @param rootDir the data folder (created when absent)
 * @param options variant, URL and checksum overrides, log, fetch
 * @returns the folder holding the `.bin` files
 * @example
 * ```ts ignore
 * import { ensureCifar } from "./download.ts";
 * const folder = await ensureCifar("data", { variant: "cifar10" });
 * console.log(folder); // "data/cifar-10-batches-bin"
 * ```
 */
export async function ensureCifar(rootDir: string, options: EnsureCifarOptions): Promise<string> {
  const layout = CIFAR_LAYOUTS[options.variant];
  if (!layout) throw new UserError(`unknown CIFAR variant "${options.variant}"`);
  const log = options.log === undefined ? (line: string) => console.error(line) : options.log;
  const url = options.url ?? CIFAR_ARCHIVES[options.variant].url;
  const md5 = (options.md5 ?? CIFAR_ARCHIVES[options.variant].md5).toLowerCase();
  const fetchFn = options.fetchFn ?? globalThis.fetch;
  const folder = join(rootDir, layout.folderName);
  const expected = [...layout.trainFiles, ...layout.testFiles];

  const missing = await missingFiles(folder, expected, cifarRecordSize(options.variant));
  if (missing === null) return folder;
  if (missing.length < expected.length) {
    // Only a complete extraction is renamed into place, so this folder was made by hand.
    throw new UserError(
      `${folder} exists but lacks ${missing.join(", ")}; remove the folder to download again, ` +
        `or point --data at it to use the files it has`,
    );
  }
  if (await exists(folder)) {
    throw new UserError(
      `${folder} exists but holds no ${layout.title} files; remove it to download again`,
    );
  }

  await Deno.mkdir(rootDir, { recursive: true });
  const archive = join(rootDir, archiveName(url));
  if (await exists(archive)) {
    const sum = await md5OfFile(archive);
    if (sum === md5) {
      log?.(`data: using the archive ${archive} (checksum ok)`);
    } else {
      log?.(`data: ${archive} has the wrong checksum (${sum}); downloading it again`);
      await Deno.remove(archive);
    }
  }
  if (!(await exists(archive))) await download(url, archive, md5, fetchFn, log);

  log?.(`data: extracting ${archive}`);
  const tmp = await Deno.makeTempDir({ dir: rootDir, prefix: ".extract-" });
  try {
    await extractTarGz(archive, tmp);
    const extracted = join(tmp, layout.folderName);
    const lacking = await missingFiles(extracted, expected, cifarRecordSize(options.variant));
    if (lacking !== null) {
      throw new UserError(
        `${archive}: the archive lacks ${layout.folderName}/${
          lacking.join(", ")
        } (or they are not whole ${layout.title} files); delete it to download again`,
      );
    }
    await Deno.rename(extracted, folder);
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  log?.(`data: ${layout.title} ready in ${folder}`);
  return folder;
}

/** The archive's file name: the last path segment of the URL. */
function archiveName(url: string): string {
  let name: string;
  try {
    name = basename(new URL(url).pathname);
  } catch {
    throw new UserError(`download URL ${url} is not a valid URL`);
  }
  if (!name || name === "/" || name.startsWith(".")) {
    throw new UserError(`download URL ${url} does not end in a file name`);
  }
  return name;
}

/**
 * `null` when every expected file is present with a size that is a positive whole number of
 * records, else the names that are missing or malformed.
 */
async function missingFiles(
  folder: string,
  names: readonly string[],
  recordSize: number,
): Promise<string[] | null> {
  const missing: string[] = [];
  for (const name of names) {
    try {
      const info = await Deno.stat(join(folder, name));
      if (!info.isFile || info.size === 0 || info.size % recordSize !== 0) missing.push(name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      missing.push(name);
    }
  }
  return missing.length === 0 ? null : missing;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function md5OfFile(path: string, hash: Hash = createHash("md5")): Promise<string> {
  await hashFileInto(path, hash);
  return hash.digest("hex");
}

async function hashFileInto(path: string, hash: Hash): Promise<void> {
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(1 << 20);
  while (true) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
}

/**
 * Downloads `url` to `dest` through `dest.partial`: resumes a partial file with a range request
 * when the server allows it, hashes chunk by chunk, and renames only on a matching MD5.
 */
async function download(
  url: string,
  dest: string,
  md5: string,
  fetchFn: typeof fetch,
  log: ((line: string) => void) | null,
): Promise<void> {
  const partial = `${dest}.partial`;
  const hash = createHash("md5");
  let have = 0;
  try {
    have = (await Deno.stat(partial)).size;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const headers: Record<string, string> = have > 0 ? { Range: `bytes=${have}-` } : {};
  let response: Response;
  try {
    response = await fetchFn(url, { headers });
  } catch (e) {
    throw new UserError(
      `could not download ${url} (${e instanceof Error ? e.message : e}); ` +
        `check the network or pass --data DIR with a local copy`,
    );
  }
  if (response.status === 416 && have > 0) {
    // The partial file is not a prefix the server can continue: start over.
    await response.body?.cancel();
    await Deno.remove(partial);
    return download(url, dest, md5, fetchFn, log);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new UserError(
      `could not download ${url}: HTTP ${response.status} ${response.statusText}; ` +
        `pass --data DIR with a local copy`,
    );
  }
  const resumed = have > 0 && response.status === 206 &&
    (response.headers.get("content-range") ?? "").startsWith(`bytes ${have}-`);
  if (response.status === 206 && !resumed) {
    await response.body.cancel();
    if (have === 0) throw new UserError(`could not download ${url}: unexpected partial content`);
    await Deno.remove(partial); // not the range asked for: start over
    return download(url, dest, md5, fetchFn, log);
  }
  if (resumed) {
    await hashFileInto(partial, hash);
    log?.(`data: resuming ${url} after ${mib(have)}`);
  } else {
    have = 0;
    log?.(`data: downloading ${url}`);
  }
  const length = Number(response.headers.get("content-length") ?? NaN);
  const total = Number.isFinite(length) ? have + length : NaN;
  let got = have;
  let nextReport = 0.1;
  {
    using file = await Deno.open(partial, {
      write: true,
      create: true,
      append: resumed,
      truncate: !resumed,
    });
    try {
      for await (const chunk of response.body) {
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) off += await file.write(chunk.subarray(off));
        got += chunk.length;
        if (total > 0 && got / total >= nextReport && got < total) {
          log?.(`data: ${mib(got)} of ${mib(total)}`);
          nextReport = Math.floor((got / total) * 10) / 10 + 0.1;
        }
      }
    } catch (e) {
      // A dropped connection, or a failed write of the partial file (a full disk): what was
      // written is kept, and the next run resumes after it.
      const cause = (e instanceof Error ? e.message : String(e)).split("\n")[0];
      throw new UserError(
        `download of ${url} stopped at ${got} of ${Number.isFinite(total) ? total : "?"} bytes ` +
          `(${cause}); ${partial} is kept: run again to resume`,
      );
    }
  }
  if (Number.isFinite(total) && got !== total) {
    throw new UserError(
      `download of ${url} stopped at ${got} of ${total} bytes; run again to resume`,
    );
  }
  const sum = hash.digest("hex");
  if (sum !== md5) {
    await Deno.remove(partial).catch(() => {});
    throw new UserError(
      `download of ${url} failed its checksum: MD5 ${sum}, expected ${md5}; ` +
        `the file was removed, run again to download it anew`,
    );
  }
  await Deno.rename(partial, dest);
  log?.(`data: downloaded ${mib(got)} to ${dest} (checksum ok)`);
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/**
 * Streams a `.tar.gz` into `destDir`: gunzip with `DecompressionStream`, untar with `tar-stream`.
 * Entries whose path would leave `destDir` are refused; only files and folders are written.
 */
async function extractTarGz(archive: string, destDir: string): Promise<void> {
  const file = await Deno.open(archive, { read: true });
  const gunzipped = file.readable.pipeThrough(new DecompressionStream("gzip"));
  const extract = tarStream.extract();
  const source = Readable.fromWeb(gunzipped as Parameters<typeof Readable.fromWeb>[0]);
  source.on("error", (e: Error) => extract.destroy(e));
  source.pipe(extract);
  try {
    for await (const entry of extract) {
      const name = normalize(entry.header.name);
      if (name.startsWith("/") || name === ".." || name.startsWith("../")) {
        throw new UserError(`${archive}: entry "${entry.header.name}" points outside the archive`);
      }
      const target = join(destDir, name);
      if (entry.header.type === "directory") {
        await Deno.mkdir(target, { recursive: true });
        entry.resume();
      } else if (entry.header.type === "file") {
        await Deno.mkdir(dirname(target), { recursive: true });
        using out = await Deno.open(target, { write: true, createNew: true });
        for await (const chunk of entry) {
          const bytes = chunk as Uint8Array;
          let off = 0;
          while (off < bytes.length) off += await out.write(bytes.subarray(off));
        }
      } else {
        entry.resume(); // links and other entry types are not part of the CIFAR archives
      }
    }
  } catch (e) {
    source.destroy();
    if (e instanceof UserError) throw e;
    throw new UserError(
      `${archive}: could not extract (${e instanceof Error ? e.message : e}); ` +
        `delete it to download again`,
    );
  }
}
