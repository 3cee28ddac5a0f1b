/**
 * The tests worth running on a hardware GPU, gathered for one bundle (`bench/prepare_gpu.sh`
 * bundles this file; `bench/gpu_run.sh` runs it with `deno test` on the GPU machine, which has
 * no network): PyTorch parity of every model on the GPU's kernels (workgroup-tiled GEMMs), the
 * fast convolution kernels against tfjs's, and replayed steps against eager ones. The parity
 * test reads its fixtures next to the bundle (`bench/out/fixtures/`).
 *
 * @module
 */
import "./models_parity_test.ts";
import "./kernels_conv_test.ts";
import "./training_captured_test.ts";
