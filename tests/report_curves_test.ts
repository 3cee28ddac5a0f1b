import assert from "node:assert/strict";
import { decodePng as decode } from "../deno_deps.ts";
import { CURVE_COLORS, CURVES_SIZE, niceTicks, renderCurves } from "../report/curves.ts";
import type { EpochRecord } from "../run/records.ts";

function record(epoch: number): EpochRecord {
  return {
    epoch,
    lr: epoch <= 80 ? 0.1 : 0.01,
    train_loss: 2 * Math.exp(-epoch / 20) + 0.05,
    train_acc: 0.95 - 0.6 * Math.exp(-epoch / 20),
    val_loss: 2 * Math.exp(-epoch / 25) + 0.3,
    val_acc: 0.9 - 0.55 * Math.exp(-epoch / 25),
    epoch_time_s: 40,
    img_per_s: 1250,
  };
}

/** Pixels within 12 of the colour in every channel. */
function countColor(png: Uint8Array, rgb: readonly number[]): number {
  const img = decode(png);
  assert.equal(img.width, CURVES_SIZE.width);
  assert.equal(img.height, CURVES_SIZE.height);
  let n = 0;
  for (let p = 0; p < img.width * img.height; p++) {
    const at = p * img.channels;
    if (rgb.every((c, k) => Math.abs(img.data[at + k] - c) <= 12)) n++;
  }
  return n;
}

Deno.test("150 epochs: both lines are drawn across the panels", async () => {
  const png = await renderCurves(Array.from({ length: 150 }, (_, i) => record(i + 1)));
  // The legend alone holds a few hundred pixels of each colour; two long lines hold far more.
  assert.ok(countColor(png, CURVE_COLORS.train) > 1500);
  assert.ok(countColor(png, CURVE_COLORS.val) > 1500);
});

Deno.test("one epoch: points are still drawn", async () => {
  const nan: EpochRecord = {
    ...record(1),
    train_loss: NaN,
    train_acc: NaN,
    val_loss: NaN,
    val_acc: NaN,
  };
  const legendOnly = await renderCurves([nan]);
  const one = await renderCurves([record(1)]);
  for (const color of [CURVE_COLORS.train, CURVE_COLORS.val]) {
    const base = countColor(legendOnly, color);
    assert.ok(base > 0, "the legend shows each colour");
    assert.ok(countColor(one, color) > base + 60, "each panel shows a marker for each series");
  }
});

Deno.test("niceTicks gives round steps inside the range", () => {
  assert.deepEqual(niceTicks(0, 1, 5).values, [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0.47, 1.53, 8, 1).values, [1]);
  const t = niceTicks(-4, 153, 8, 1);
  assert.equal(t.step, 20);
  assert.equal(t.values[0], 0);
  assert.equal(t.values.at(-1), 140);
});

Deno.test("no records is refused", async () => {
  await assert.rejects(() => renderCurves([]), RangeError);
});
