/**
 * What `predict` prints and writes for each classified image: a fixed-column table for the
 * terminal, and the same rows as JSON and CSV.
 *
 * @module
 */

/** One image's most probable classes, most probable first. */
export interface PredictionRow {
  /** The image file. */
  path: string;
  /** Class names and softmax probabilities (0..1), non-increasing. */
  top: { class: string; probability: number }[];
}

/** A probability as a percentage with one decimal, e.g. `87.3%`. */
function percent(p: number): string {
  return `${(100 * p).toFixed(1)}%`;
}

/**
 * The terminal table: the file, then one column per rank holding `<class> <percent>`.
 *
 * @param rows the predictions
 * @returns the lines, header first, columns separated by at least two spaces
 * @example
 * ```ts
 * import { formatPredictionTable } from "./predictions.ts";
 * console.log(formatPredictionTable([
 *   { path: "cat.png", top: [{ class: "cat", probability: 0.9 }, { class: "dog", probability: 0.1 }] },
 * ]));
 * // file     top 1      top 2
 * // cat.png  cat 90.0%  dog 10.0%
 * ```
 */
export function formatPredictionTable(rows: PredictionRow[]): string {
  const k = Math.max(0, ...rows.map((r) => r.top.length));
  const table = [
    ["file", ...Array.from({ length: k }, (_, i) => `top ${i + 1}`)],
    ...rows.map((r) => [r.path, ...r.top.map((t) => `${t.class} ${percent(t.probability)}`)]),
  ];
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => (row[c] ?? "").length)));
  return table
    .map((row) => row.map((cell, c) => c === row.length - 1 ? cell : cell.padEnd(widths[c])))
    .map((row) => row.join("  "))
    .join("\n");
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * The rows as CSV (RFC 4180 quoting): `path,class_1,probability_1,...,class_k,probability_k`.
 *
 * @param rows the predictions
 * @returns the text, header first, one line per image, ending with a newline
 * @example
 * ```ts
 * import { predictionsCsv } from "./predictions.ts";
 * console.log(predictionsCsv([{ path: "a,b.png", top: [{ class: "cat", probability: 0.5 }] }]));
 * // path,class_1,probability_1
 * // "a,b.png",cat,0.5
 * ```
 */
export function predictionsCsv(rows: PredictionRow[]): string {
  const k = Math.max(0, ...rows.map((r) => r.top.length));
  const header = ["path"];
  for (let i = 1; i <= k; i++) header.push(`class_${i}`, `probability_${i}`);
  const lines = [header.join(",")];
  for (const r of rows) {
    const fields = [csvField(r.path)];
    for (const t of r.top) fields.push(csvField(t.class), String(t.probability));
    lines.push(fields.join(","));
  }
  return lines.join("\n") + "\n";
}
