/**
 * The convolution tests' shared harness: a convolution's output and both gradients on seeded
 * data, on the current backend.
 *
 * @module
 */
import { tf } from "../../deps.ts";
import { Rng } from "../../util/rng.ts";

/** The shape of a convolution case (channels last, square kernel). */
export interface ConvShape {
  batch: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  k: number;
}

/**
 * Output, input gradient and filter gradient of `sum(conv(x, w) * g)` for seeded `x`, `w`, `g`.
 *
 * @param c the shape
 * @param seed the data's seed
 * @param filterIn input channels of the filter (`cin`, or `cin / groups`)
 * @param conv the convolution under test
 * @returns `[y, dx, dw]`
 */
export async function convAndGrads(
  c: ConvShape,
  seed: number,
  filterIn: number,
  conv: (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D,
): Promise<Float32Array[]> {
  const rng = new Rng(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
  const x = tf.tensor4d(fill(c.batch * c.h * c.w * c.cin), [c.batch, c.h, c.w, c.cin]);
  const w = tf.tensor4d(fill(c.k * c.k * filterIn * c.cout), [c.k, c.k, filterIn, c.cout]);
  const y = conv(x, w);
  const g = tf.tensor(fill(y.size), y.shape);
  const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    conv(a as tf.Tensor4D, b as tf.Tensor4D).mul(g).sum()
  );
  const [dx, dw] = grads([x, w]);
  const out = [await y.data(), await dx.data(), await dw.data()] as Float32Array[];
  tf.dispose([x, w, y, g, dx, dw]);
  return out;
}
