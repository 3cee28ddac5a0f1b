/**
 * A Markdown table that compares training runs side by side (`run/folder.ts`'s `compareRuns`
 * reads them from their run folders).
 *
 * @module
 */
import { UserError } from "../util/errors.ts";

/** What the table reads of an epoch (a run's epoch record has these fields and more). */
export interface ComparedEpoch {
  /** Epoch number, 1-based. */
  epoch: number;
  /** Validation accuracy after the epoch, 0..1. */
  val_acc: number;
  /** Seconds spent training in the epoch. */
  epoch_time_s: number;
  /** Training images per second over the epoch. */
  img_per_s: number;
}

/** One run to compare: its folder, configuration and epochs. */
export interface ComparedRun {
  /** The run folder as given. */
  dir: string;
  /** Model, parameters and planned epochs of the run. */
  config: { model: string; params: number; epochs: number };
  /** The run's epochs, in order. */
  records: readonly ComparedEpoch[];
}

/** What the comparison table shows for one run. */
export interface RunSummary {
  /** The run folder as given. */
  dir: string;
  /** Model name from `config.json`. */
  model: string;
  /** Trainable parameters from `config.json`. */
  params: number;
  /** Epochs recorded in `metrics.jsonl`. */
  epochsDone: number;
  /** Epochs asked for in `config.json`. */
  epochsPlanned: number;
  /** Best validation accuracy (0..1) and its epoch; null when no epoch is recorded. */
  best: { acc: number; epoch: number } | null;
  /** Validation accuracy (0..1) of the last recorded epoch; null when none. */
  finalAcc: number | null;
  /** Sum of the epochs' training seconds. */
  trainSeconds: number;
  /** Mean of the epochs' training images per second; null when none. */
  imgPerS: number | null;
}

/**
 * Summarises the epochs of one run.
 *
 * @param dir the run folder (only copied into the summary)
 * @param config model, params and epochs of the run
 * @param records the run's epochs
 * @returns the figures of the comparison table
 * @example
 * ```ts
 * import { summarizeRun } from "./compare.ts";
 * const s = summarizeRun("runs/a", { model: "m", params: 1, epochs: 2 }, []);
 * console.assert(s.best === null);
 * ```
 */
export function summarizeRun(
  dir: string,
  config: { model: string; params: number; epochs: number },
  records: readonly ComparedEpoch[],
): RunSummary {
  let best: RunSummary["best"] = null;
  for (const r of records) {
    if (Number.isFinite(r.val_acc) && (best === null || r.val_acc > best.acc)) {
      best = { acc: r.val_acc, epoch: r.epoch };
    }
  }
  const last = records.at(-1);
  return {
    dir,
    model: config.model,
    params: config.params,
    epochsDone: records.length,
    epochsPlanned: config.epochs,
    best,
    finalAcc: last === undefined ? null : last.val_acc,
    trainSeconds: records.reduce((s, r) => s + r.epoch_time_s, 0),
    imgPerS: records.length === 0
      ? null
      : records.reduce((s, r) => s + r.img_per_s, 0) / records.length,
  };
}

/**
 * `1234567` as `1,234,567`.
 *
 * @param n an integer
 * @returns the number with thousands separators
 */
export function groupThousands(n: number): string {
  const sign = n < 0 ? "-" : "";
  return sign + Math.round(Math.abs(n)).toString().replace(/\B(?=(\d{3})+$)/g, ",");
}

/**
 * A duration as `12.3s`, `4m 05s` or `2h 03m 04s`.
 *
 * @param seconds the duration
 * @returns the duration for people
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return String(seconds);
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(s).padStart(2, "0");
  return h > 0 ? `${h}h ${mm}m ${ss}s` : `${m}m ${ss}s`;
}

const pct = (v: number | null) => v === null ? "-" : `${(100 * v).toFixed(2)}%`;
const cell = (s: string) => s.replaceAll("|", "\\|");

/**
 * Compares runs in one Markdown table, one row per run in the order given: run, model,
 * parameters, epochs done (of planned), best validation accuracy (with its epoch), final
 * validation accuracy, training time (sum of the epochs' training seconds) and mean training
 * images per second.
 *
 * @param runs the runs (at least one)
 * @returns the table, ending with a newline
 * @throws {UserError} when no run is given
 * @example
 * ```ts
 * import { compareTable } from "./compare.ts";
 * const config = { model: "resnet20", params: 272474, epochs: 2 };
 * console.log(compareTable([{ dir: "runs/a", config, records: [] }]));
 * ```
 */
export function compareTable(runs: readonly ComparedRun[]): string {
  if (runs.length === 0) throw new UserError("no run folder given to compare");
  const rows: string[][] = [];
  for (const { dir, config, records } of runs) {
    const s = summarizeRun(dir, config, records);
    rows.push([
      s.dir,
      s.model,
      groupThousands(s.params),
      `${s.epochsDone}/${s.epochsPlanned}`,
      s.best === null ? "-" : `${pct(s.best.acc)} (epoch ${s.best.epoch})`,
      pct(s.finalAcc),
      formatDuration(s.trainSeconds),
      s.imgPerS === null ? "-" : s.imgPerS.toFixed(1),
    ].map(cell));
  }
  const header = [
    "run",
    "model",
    "parameters",
    "epochs",
    "best val acc",
    "final val acc",
    "training time",
    "img/s",
  ];
  const right = [false, false, true, true, true, true, true, true];
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    "| " + r.map((c, i) => right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ") +
    " |";
  const rule = "|" +
    widths.map((w, i) => right[i] ? "-".repeat(w + 1) + ":" : ":" + "-".repeat(w + 1)).join("|") +
    "|";
  return [line(header), rule, ...rows.map(line)].join("\n") + "\n";
}
