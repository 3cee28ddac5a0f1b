/**
 * Everything the WebGPU layer registers, in one list: the tfjs kernels ({@link KERNELS}) and the
 * extensions of `ops/extensions.ts` ({@link EXTENSIONS}). `installWebGpu` registers these (and
 * only these) and `uninstall` removes them. A new kernel is a declaration in its own file and
 * one line here (see "Adding a kernel" in CONTRIBUTING.md).
 *
 * @module
 */
import { STEP_CAPTURE } from "../runtime/capture.ts";
import { deviceError } from "../runtime/device_errors.ts";
import { BATCH_NORM_KERNELS } from "./batchnorm.ts";
import { CONV_KERNELS } from "./conv.ts";
import type { ExtensionEntry, KernelEntry } from "./declare.ts";
import { GROUPED_CONV_KERNELS } from "./grouped_conv.ts";
import { multiTensorSgd } from "./multi_tensor_sgd.ts";
import { runningStatsInPlace } from "./running_stats.ts";
import { SQUEEZE_EXCITE_KERNELS } from "./squeeze_excite.ts";

/** The tfjs kernels. */
export const KERNELS: readonly KernelEntry[] = [
  ...CONV_KERNELS, // tfjs's Conv2D and friends: implicit GEMMs
  ...BATCH_NORM_KERNELS, // FusedBatchNormTraining and its gradient
  ...GROUPED_CONV_KERNELS, // GroupedConv2D and its two gradients
  ...SQUEEZE_EXCITE_KERNELS, // SqueezeExcite, SqueezeExciteGrad
];

/** The extensions. */
export const EXTENSIONS: readonly ExtensionEntry[] = [
  { name: "sgdStep", impl: multiTensorSgd }, // SGD of every parameter in a few dispatches
  { name: "runningStats", impl: runningStatsInPlace }, // BatchNorm's running averages
  { name: "capture", impl: STEP_CAPTURE }, // capture a step once, replay it
  { name: "deviceError", impl: deviceError }, // GPU errors, thrown by the step after its reads
];
