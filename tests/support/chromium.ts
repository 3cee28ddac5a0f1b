/**
 * A real browser for the tests: Debian's `chromium-headless-shell` driven by puppeteer-core (the
 * system binary; no browser download), with WebGPU on SwiftShader. Tests that need it skip with
 * {@link CHROMIUM_MISSING} as their reason where the binary is absent.
 *
 * @module
 */
import { puppeteer } from "../../dev_deps.ts";

/** Where `apt-get install chromium-headless-shell` puts the browser. */
export const CHROMIUM_PATH = "/usr/bin/chromium-headless-shell";

/** Flags that give Chromium's WebGPU (Dawn, SwiftShader's Vulkan) without a GPU or a sandbox. */
export const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-unsafe-swiftshader",
  "--enable-features=Vulkan",
];

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Whether the browser is installed here. */
export const hasChromium: boolean = exists(CHROMIUM_PATH);

/** The skip line of browser tests where the browser is absent. */
export const CHROMIUM_MISSING =
  `skipped: no ${CHROMIUM_PATH} (apt-get install chromium-headless-shell; .ci/run installs it)`;

/** A started browser. */
export type Browser = Awaited<ReturnType<typeof puppeteer.launch>>;

/**
 * Starts headless Chromium with WebGPU.
 *
 * @returns the browser; `close()` it when done
 */
export async function launchChromium(): Promise<Browser> {
  // The profile lives under .test-tmp/, the one folder the tests may write; it goes with the
  // browser.
  await Deno.mkdir(".test-tmp", { recursive: true });
  const userDataDir = await Deno.makeTempDir({ dir: ".test-tmp", prefix: "chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_FLAGS,
    headless: true,
    userDataDir,
    // The browser's environment is given, not inherited: the tests may read only a few variables.
    env: {},
    // puppeteer's own SIGINT/SIGTERM/exit handlers are not needed in a test process.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  browser.once("disconnected", () => {
    Deno.removeSync(userDataDir, { recursive: true });
  });
  return browser;
}
