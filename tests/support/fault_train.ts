/**
 * A training run that stops itself at a chosen point and waits to be killed (`kill -9`), for
 * tests/faults_test.ts: `deno run --allow-read --allow-write=.test-tmp fault_train.ts CONFIG OUT
 * POINT`, where CONFIG is the training configuration as JSON, OUT the run folder, and POINT one
 * of `write:K:half` (the K-th file write, 1-based, with half its temporary file written),
 * `write:K:full` (the K-th write's temporary file complete, not yet renamed) or `step:E:S`
 * (training step S of epoch E queued). At the point it prints `PAUSED` and waits forever.
 *
 * @module
 */
import { initBackend } from "../../backend/backend.ts";
import { train } from "../../training/loop.ts";
import type { TrainConfig } from "../../training/config.ts";
import { setFileWriter } from "../../util/files.ts";

const [configJson, out, point] = Deno.args;
const config = JSON.parse(configJson) as TrainConfig;
const [kind, a, b] = point.split(":");

const pause = async (): Promise<never> => {
  console.log("PAUSED");
  await new Promise(() => {});
  throw new Error("unreachable");
};

let writes = 0;
if (kind === "write") {
  setFileWriter(async (path, bytes) => {
    if (++writes !== Number(a)) return await Deno.writeFile(path, bytes);
    await Deno.writeFile(path, b === "half" ? bytes.subarray(0, bytes.length >> 1) : bytes);
    await pause();
  });
}
// Keeps the event loop alive while the process waits at a step (the step hook is synchronous).
const waiting = setInterval(() => {}, 1 << 30);
await initBackend({ backend: "cpu", log: null });
await train(config, {
  out,
  log: () => {},
  onStep: (epoch, step) => {
    if (kind === "step" && epoch === Number(a) && step === Number(b)) {
      console.log("PAUSED");
      // Blocks synchronously: nothing after this step runs until the kill.
      const until = Date.now() + 600_000;
      while (Date.now() < until) { /* waiting for kill -9 */ }
    }
  },
});
clearInterval(waiting);
console.log(`DONE after ${writes} writes`);
