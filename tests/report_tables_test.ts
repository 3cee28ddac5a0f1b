import assert from "node:assert/strict";
import {
  confusionMatrix,
  formatConfusion,
  formatPerClass,
  perClassAccuracy,
} from "../report/tables.ts";

// 3 classes; truth: 0 0 0 1 1 2 2 2 2; predictions chosen by hand.
const truth = [0, 0, 0, 1, 1, 2, 2, 2, 2];
const predicted = new Int32Array([0, 0, 1, 1, 2, 2, 2, 0, 2]);

Deno.test("confusionMatrix counts truth rows against prediction columns", () => {
  const m = confusionMatrix(predicted, truth, 3);
  assert.deepEqual(m, [
    [2, 1, 0],
    [0, 1, 1],
    [1, 0, 3],
  ]);
  assert.deepEqual(confusionMatrix([], [], 2), [[0, 0], [0, 0]]);
  assert.throws(() => confusionMatrix([0], [0, 1], 2), /lengths must match/);
  assert.throws(() => confusionMatrix([0, 3], [0, 1], 3), /prediction 3 at index 1/);
  assert.throws(() => confusionMatrix([0, 1], [-1, 1], 3), /label -1 at index 0/);
});

Deno.test("perClassAccuracy is the diagonal over the row sums", () => {
  const acc = perClassAccuracy(confusionMatrix(predicted, truth, 3));
  assert.deepEqual(acc, [2 / 3, 1 / 2, 3 / 4]);
  const empty = perClassAccuracy([[1, 0], [0, 0]]);
  assert.equal(empty[0], 1);
  assert.ok(Number.isNaN(empty[1]));
});

Deno.test("the text tables are aligned and carry the figures", () => {
  const m = confusionMatrix(predicted, truth, 3);
  const names = ["cat", "dog", "airplane"];
  const conf = formatConfusion(m, names).split("\n");
  assert.equal(conf.length, 4);
  assert.deepEqual(conf[0].split(/\s{2,}/), ["true \\ pred", "cat", "dog", "airplane", "total"]);
  assert.deepEqual(conf[3].split(/\s+/), ["airplane", "1", "0", "3", "4"]);
  // Right-aligned columns: every line is equally long and the numbers end under their header.
  assert.equal(new Set(conf.map((l) => l.length)).size, 1);
  const airplaneEnd = conf[0].indexOf("airplane") + "airplane".length;
  for (const line of conf.slice(1)) assert.notEqual(line[airplaneEnd - 1], " ");

  const per = formatPerClass(m, names).split("\n");
  assert.equal(per.length, 5);
  assert.deepEqual(per[1].split(/\s+/), ["cat", "2", "3", "66.67%"]);
  assert.deepEqual(per[2].split(/\s+/), ["dog", "1", "2", "50.00%"]);
  assert.deepEqual(per[3].split(/\s+/), ["airplane", "3", "4", "75.00%"]);
  assert.deepEqual(per[4].split(/\s+/), ["all", "6", "9", "66.67%"]);
  assert.equal(new Set(per.map((l) => l.length)).size, 1);
  assert.throws(() => formatPerClass(m, ["a", "b"]), /2 class names for 3 classes/);
});
