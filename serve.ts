/**
 * `deno task serve --run <dir> [--port N] [--host H]`: a local page that classifies the photos
 * dropped on it with a run's best weights, in the browser (WebGPU, else WebGL, else cpu); for a
 * CIFAR run it also shows a grid of test images. The toolkit bundle is built at start.
 *
 * @module
 */
import { servePage } from "./web/server.ts";
import { type FlagSpec, helpText, parseFlags, runCli } from "./cli/args.ts";
import { UserError } from "./util/errors.ts";

const FLAGS: Record<string, FlagSpec> = {
  "run": { kind: "string", help: "a run folder: its model, classes, input size and best weights" },
  "port": { kind: "uint", help: "port to listen on (default 8000; 0: any free one)" },
  "host": { kind: "string", help: "host to listen on (default 127.0.0.1)" },
  "help": { kind: "bool", help: "show this help" },
};

runCli(async () => {
  const { values: v } = parseFlags(Deno.args, FLAGS);
  if (v["help"]) {
    console.log(helpText("usage: deno task serve --run <dir> [--port N] [--host H]", FLAGS));
    return;
  }
  if (typeof v["run"] !== "string") throw new UserError("--run: give a run folder");
  const port = (v["port"] as number | undefined) ?? 8000;
  if (port < 0 || port > 65535) throw new UserError(`--port: expected 0..65535, got ${port}`);
  await servePage({
    run: v["run"],
    port,
    hostname: (v["host"] as string | undefined) ?? "127.0.0.1",
    onListen: (url) => console.log(`serving ${v["run"]} on ${url}`),
  });
});
