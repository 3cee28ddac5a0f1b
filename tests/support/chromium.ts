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
  // The profile goes with the browser: `close()` removes it once Chromium has exited (Chromium may
  // still be writing it for a moment after the connection closes, so the removal is retried).
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    await removeProfile(userDataDir);
  };
  return browser;
}

/** A page of a started browser. */
export type Page = Awaited<ReturnType<Browser["newPage"]>>;

/**
 * A new page whose console lines and uncaught errors are printed, prefixed `page:`, so that a
 * failing browser test shows what the page said.
 *
 * @param browser a started browser
 * @returns the page
 */
export async function openPage(browser: Browser): Promise<Page> {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`page: ${m.text()}`));
  page.on("pageerror", (e) => console.log(`page error: ${(e as Error).message}`));
  return page;
}

/** Removes a browser profile folder, retrying while Chromium's last writes land. */
async function removeProfile(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      await Deno.remove(dir, { recursive: true });
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
