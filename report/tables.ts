/**
 * Confusion matrix and per-class accuracy, computed from predicted and true class indices and
 * printed as aligned text tables for the terminal.
 *
 * @module
 */

/**
 * Counts (truth, prediction) pairs.
 *
 * @param predicted predicted class index of every example
 * @param truth true class index of every example (same length)
 * @param numClasses number of classes; every index must lie in 0..numClasses-1
 * @returns `matrix[t][p]`: how many examples of true class `t` were predicted as `p`
 * @throws {RangeError} on different lengths or an index out of range
 * @example
 * ```ts
 * import { confusionMatrix } from "./tables.ts";
 * const m = confusionMatrix([0, 1, 1], [0, 0, 1], 2);
 * console.assert(JSON.stringify(m) === "[[1,1],[0,1]]");
 * ```
 */
export function confusionMatrix(
  predicted: ArrayLike<number>,
  truth: ArrayLike<number>,
  numClasses: number,
): number[][] {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
  }
  if (predicted.length !== truth.length) {
    throw new RangeError(
      `${predicted.length} predictions for ${truth.length} labels: the lengths must match`,
    );
  }
  const matrix = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < truth.length; i++) {
    const t = truth[i];
    const p = predicted[i];
    for (const [name, v] of [["label", t], ["prediction", p]] as const) {
      if (!Number.isInteger(v) || v < 0 || v >= numClasses) {
        throw new RangeError(`${name} ${v} at index ${i} is not a class in 0..${numClasses - 1}`);
      }
    }
    matrix[t][p]++;
  }
  return matrix;
}

function checkSquare(matrix: number[][]): void {
  for (const row of matrix) {
    if (row.length !== matrix.length) {
      throw new RangeError(`the confusion matrix must be square, got a row of ${row.length}`);
    }
  }
}

/**
 * Accuracy of each true class: the diagonal over the row sum.
 *
 * @param matrix a confusion matrix from {@link confusionMatrix} (rows = truth)
 * @returns one accuracy in 0..1 per class; `NaN` for a class with no example
 * @example
 * ```ts
 * import { perClassAccuracy } from "./tables.ts";
 * console.assert(perClassAccuracy([[1, 1], [0, 2]]).join() === "0.5,1");
 * ```
 */
export function perClassAccuracy(matrix: number[][]): number[] {
  checkSquare(matrix);
  return matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total === 0 ? NaN : row[i] / total;
  });
}

function checkNames(matrix: number[][], classNames: string[]): void {
  checkSquare(matrix);
  if (classNames.length !== matrix.length) {
    throw new RangeError(`${classNames.length} class names for ${matrix.length} classes`);
  }
}

/**
 * The confusion matrix as an aligned text table: one row per true class, one column per
 * predicted class, and the row totals.
 *
 * @param matrix a confusion matrix (rows = truth, columns = prediction)
 * @param classNames the name of each class
 * @returns the table, lines joined with newlines, without a final newline
 * @example
 * ```ts
 * import { formatConfusion } from "./tables.ts";
 * console.log(formatConfusion([[3, 1], [0, 4]], ["cat", "dog"]));
 * ```
 */
export function formatConfusion(matrix: number[][], classNames: string[]): string {
  checkNames(matrix, classNames);
  const corner = "true \\ pred";
  const totals = matrix.map((row) => row.reduce((a, b) => a + b, 0));
  const nameW = Math.max(corner.length, ...classNames.map((n) => n.length));
  const colW = classNames.map((n, j) =>
    Math.max(n.length, ...matrix.map((row) => String(row[j]).length))
  );
  const totalW = Math.max("total".length, ...totals.map((t) => String(t).length));
  const lines = [
    [
      corner.padEnd(nameW),
      ...classNames.map((n, j) => n.padStart(colW[j])),
      "total".padStart(totalW),
    ]
      .join("  "),
    ...matrix.map((row, i) =>
      [
        classNames[i].padEnd(nameW),
        ...row.map((v, j) => String(v).padStart(colW[j])),
        String(totals[i]).padStart(totalW),
      ].join("  ")
    ),
  ];
  return lines.map((l) => l.trimEnd()).join("\n");
}

/**
 * Per-class accuracy as an aligned text table: class, correct, total, accuracy, and a last
 * row for all classes together.
 *
 * @param matrix a confusion matrix (rows = truth, columns = prediction)
 * @param classNames the name of each class
 * @returns the table, lines joined with newlines, without a final newline
 * @example
 * ```ts
 * import { formatPerClass } from "./tables.ts";
 * console.log(formatPerClass([[3, 1], [0, 4]], ["cat", "dog"]));
 * ```
 */
export function formatPerClass(matrix: number[][], classNames: string[]): string {
  checkNames(matrix, classNames);
  const acc = perClassAccuracy(matrix);
  const correct = matrix.map((row, i) => row[i]);
  const totals = matrix.map((row) => row.reduce((a, b) => a + b, 0));
  const allCorrect = correct.reduce((a, b) => a + b, 0);
  const allTotal = totals.reduce((a, b) => a + b, 0);
  const pct = (v: number) => Number.isNaN(v) ? "-" : `${(100 * v).toFixed(2)}%`;
  const rows = [
    ["class", "correct", "total", "accuracy"],
    ...classNames.map((n, i) => [n, String(correct[i]), String(totals[i]), pct(acc[i])]),
    [
      "all",
      String(allCorrect),
      String(allTotal),
      pct(allTotal === 0 ? NaN : allCorrect / allTotal),
    ],
  ];
  const widths = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  return rows
    .map((r) => r.map((c, j) => j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j])).join("  "))
    .join("\n");
}
