/**
 * Every tfjs kernel of the WebGPU layer, in one list: `installWebGpu` registers these (and only
 * these) and `uninstall` removes them. A new kernel is a declaration in its own file and one
 * line here (see "Adding a kernel" in CONTRIBUTING.md).
 *
 * @module
 */
import { BATCH_NORM_KERNELS } from "./batchnorm.ts";
import { CONV_KERNELS } from "./conv.ts";
import type { KernelEntry } from "./declare.ts";
import { GROUPED_CONV_KERNELS } from "./grouped_conv.ts";
import { SQUEEZE_EXCITE_KERNELS } from "./squeeze_excite.ts";

/** The registration list. */
export const KERNELS: readonly KernelEntry[] = [
  ...CONV_KERNELS, // tfjs's Conv2D and friends: implicit GEMMs
  ...BATCH_NORM_KERNELS, // FusedBatchNormTraining and its gradient
  ...GROUPED_CONV_KERNELS, // GroupedConv2D and its two gradients
  ...SQUEEZE_EXCITE_KERNELS, // SqueezeExcite, SqueezeExciteGrad
];
