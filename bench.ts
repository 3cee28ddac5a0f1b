/**
 * `deno task bench [--model resnet20,regnet400mf] [--batch 64,512] [--steps N] [--warmup N]
 * [--input-size N] [--backend webgpu|cpu] [--stock] [--eager] [--json]`: training and inference
 * throughput, kernel dispatches per training step and GPU memory (`bench/models.ts`).
 *
 * @module
 */
import { runCli } from "./cli/args.ts";
import { benchModels } from "./bench/models.ts";

await runCli(() => benchModels(Deno.args));
