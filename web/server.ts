/**
 * The local page server of `deno task serve`: the page (`web/page/`), the toolkit bundle (built
 * by `deno bundle` at start, kept in memory), a run folder's configuration and best weights, and
 * for a CIFAR run 16 test images of its data folder. Everything is served from here, so the page
 * works offline.
 *
 * @module
 */
import { join } from "node:path";
import { readRun, RUN_FILES, type SavedRun } from "../run/records.ts";
import { CIFAR_VARIANTS, type CifarVariant, readCifarFile } from "../data/cifar.ts";
import { UserError } from "../util/errors.ts";
import { storedImageSize } from "../training/classify.ts";

/** Where the page's own files are. */
const PAGE_DIR = new URL("./page/", import.meta.url);
/** The browser entry the bundle is made of. */
const ENTRY = new URL("./mod.ts", import.meta.url);
/** The CIFAR test file of each variant, as the data folder holds it. */
const CIFAR_TEST_FILES: Record<CifarVariant, string[]> = {
  cifar10: ["cifar-10-batches-bin/test_batch.bin", "test_batch.bin"],
  cifar100: ["cifar-100-binary/test.bin", "test.bin"],
};
/** Test images shown in the grid. */
export const GRID_IMAGES = 16;

/** What the page learns of the run (`/run.json`). */
export interface PageRun {
  /** The run folder as given. */
  run: string;
  /** Model name. */
  model: string;
  /** Class names in label order. */
  classes: string[];
  /** The model's input size. */
  inputSize: number;
  /** The dataset (`cifar10`, `cifar100` or a folder). */
  dataset: string;
  /** The size the run's images were stored at before the model: 32 for CIFAR, else the input. */
  imageSize: number;
  /** For a CIFAR run: whether its test images are there, else why not. */
  grid: { available: true } | { available: false; reason: string } | null;
}

/**
 * Builds the toolkit bundle (`deno bundle --platform browser --minify`) into memory.
 *
 * @returns the ES module's text
 */
export async function buildBundle(): Promise<string> {
  const out = await new Deno.Command("deno", {
    args: ["bundle", "--platform", "browser", "--format", "esm", "--minify", ENTRY.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno bundle failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Reads what the page needs of a run folder: its configuration and best weights.
 *
 * @param dir the run folder
 * @returns the page's view of the run, the weights' bytes, and the CIFAR test file when present
 * @throws UserError naming the folder when it is no run folder or has no best weights
 */
export async function readPageRun(
  dir: string,
): Promise<{ run: PageRun; weights: Uint8Array; cifarTest: string | null }> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(dir);
  } catch {
    throw new UserError(`--run ${dir}: no such folder (expected a run folder of deno task train)`);
  }
  if (!stat.isDirectory) throw new UserError(`--run ${dir}: not a folder (expected a run folder)`);
  const config = (await readRun(dir)).config as SavedRun;
  if (!Array.isArray(config.classes) || typeof config.train?.inputSize !== "number") {
    throw new UserError(`--run ${join(dir, RUN_FILES.config)}: no classes or train.inputSize`);
  }
  const weightsPath = join(dir, RUN_FILES.best);
  let weights: Uint8Array;
  try {
    weights = await Deno.readFile(weightsPath);
  } catch {
    throw new UserError(`--run ${dir}: no ${RUN_FILES.best} (the run saved no best weights yet)`);
  }
  const cifar = (CIFAR_VARIANTS as readonly string[]).includes(config.dataset)
    ? config.dataset as CifarVariant
    : null;
  let cifarTest: string | null = null;
  let grid: PageRun["grid"] = null;
  if (cifar) {
    const folder = config.train.data ?? "data";
    for (const name of CIFAR_TEST_FILES[cifar]) {
      if (await isFile(join(folder, name))) {
        cifarTest = join(folder, name);
        break;
      }
    }
    grid = cifarTest ? { available: true } : {
      available: false,
      reason: `no ${cifar} test images in ${folder}/ (the run's data folder): ` +
        `expected ${CIFAR_TEST_FILES[cifar][0]}`,
    };
  }
  const run: PageRun = {
    run: dir,
    model: config.model,
    classes: config.classes,
    inputSize: config.train.inputSize,
    dataset: config.dataset,
    imageSize: storedImageSize(config.dataset, config.train.inputSize),
    grid,
  };
  return { run, weights, cifarTest };
}

/** Options of {@link servePage}. */
export interface ServePageOptions {
  /** The run folder. */
  run: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** Host name to listen on. */
  hostname: string;
  /** The bundle's text; built with {@link buildBundle} when absent. */
  bundle?: string;
  /** Called once listening, with the page's address. */
  onListen?: (url: string) => void;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/**
 * Serves the page for a run folder until the returned server is shut down.
 *
 * @param options the run folder, where to listen, the bundle
 * @returns the server and the page's address
 * @throws UserError for a bad run folder or a busy port
 */
export async function servePage(
  options: ServePageOptions,
): Promise<{ server: Deno.HttpServer; url: string }> {
  const { run, weights, cifarTest } = await readPageRun(options.run);
  const bundle = options.bundle ?? await buildBundle();
  let grid: Uint8Array | null = null;
  if (cifarTest) {
    const ds = await readCifarFile(cifarTest, { variant: run.dataset as CifarVariant });
    const per = ds.height * ds.width * 3;
    const n = Math.min(GRID_IMAGES, ds.size);
    // Labels (one int32 each) then the pixels (RGB, HWC), as one binary answer.
    grid = new Uint8Array(n * 4 + n * per);
    new Int32Array(grid.buffer, 0, n).set(ds.labels.subarray(0, n));
    grid.set(ds.pixels.subarray(0, n * per), n * 4);
  }
  const files = new Map<string, { body: Uint8Array | string; type: string }>();
  for (const name of ["index.html", "page.js"]) {
    const ext = name.slice(name.lastIndexOf("."));
    files.set(`/${name}`, { body: await Deno.readFile(new URL(name, PAGE_DIR)), type: TYPES[ext] });
  }
  files.set("/", files.get("/index.html")!);
  files.set("/regnet-vision.js", { body: bundle, type: TYPES[".js"] });
  files.set("/run.json", { body: JSON.stringify(run), type: "application/json" });
  files.set("/weights.safetensors", { body: weights, type: "application/octet-stream" });
  if (grid) files.set("/grid.bin", { body: grid, type: "application/octet-stream" });
  let url = "";
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      onListen: (addr) => {
        url = `http://${addr.hostname}:${addr.port}/`;
        options.onListen?.(url);
      },
    }, (req) => {
      const file = files.get(new URL(req.url).pathname);
      if (!file) return new Response("not found", { status: 404 });
      return new Response(file.body as BodyInit, {
        headers: { "content-type": file.type, "cache-control": "no-store" },
      });
    });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new UserError(`--port ${options.port}: already in use on ${options.hostname}`);
    }
    throw e;
  }
  return { server, url };
}
