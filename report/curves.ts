/**
 * Training curves: two panels side by side, loss per epoch and accuracy per epoch, each with a
 * train line and a validation line, ticked axes, a legend and a title.
 *
 * @module
 */
import {
  type Canvas,
  type Drawing,
  type Font,
  type Paint,
  renderPng,
  type Rgb,
  skColor,
  textWidth,
} from "./draw.ts";

/** What the curves show of an epoch (a run's epoch record has these fields and more). */
export interface CurvePoint {
  /** Epoch number, 1-based. */
  epoch: number;
  /** Mean training loss over the epoch. */
  train_loss: number;
  /** Training accuracy, 0..1. */
  train_acc: number;
  /** Validation loss after the epoch. */
  val_loss: number;
  /** Validation accuracy after the epoch, 0..1. */
  val_acc: number;
}

/** Line colours (RGB) of the two series, matplotlib's first two default colours. */
export const CURVE_COLORS: { train: [number, number, number]; val: [number, number, number] } = {
  train: [31, 119, 180],
  val: [255, 127, 14],
};

/** Size of the picture {@link renderCurves} draws, in pixels. */
export const CURVES_SIZE: { width: number; height: number } = { width: 1100, height: 420 };

const PANEL_MARGIN = { left: 70, right: 20, top: 56, bottom: 52 };
const AXIS_GREY: Rgb = [90, 90, 90];
const GRID_GREY: Rgb = [225, 225, 225];
const TEXT_BLACK: Rgb = [20, 20, 20];
/** With this many epochs or fewer, every point also gets a marker. */
const MARKER_EPOCHS = 30;

/**
 * Evenly spaced "nice" tick values (steps of 1, 2 or 5 times a power of ten) inside [lo, hi].
 *
 * @param lo lower end of the axis
 * @param hi upper end of the axis (greater than `lo`)
 * @param target about how many ticks are wanted
 * @param minStep the smallest step allowed (1 for epochs)
 * @returns the tick values, ascending, and the step between them
 * @example
 * ```ts
 * import { niceTicks } from "./curves.ts";
 * console.assert(niceTicks(0, 1, 5).values.join() === "0,0.2,0.4,0.6,0.8,1");
 * ```
 */
export function niceTicks(
  lo: number,
  hi: number,
  target = 5,
  minStep = 0,
): { values: number[]; step: number } {
  const raw = (hi - lo) / Math.max(1, target);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const unit = raw / power;
  let step = (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
  step = Math.max(step, minStep);
  const values: number[] = [];
  const first = Math.ceil(lo / step - 1e-9);
  for (let k = first; k * step <= hi + step * 1e-9; k++) {
    values.push(Number((k * step).toPrecision(12)));
  }
  return { values, step };
}

function tickLabel(value: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step) - 1e-9));
  return value.toFixed(decimals);
}

/** The [lo, hi] shown for some values: their range plus 5% each side, never empty. */
function valueRange(values: number[]): [number, number] {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < 1e-12) {
    const half = Math.abs(lo) > 1e-12 ? Math.abs(lo) * 0.1 : 0.5;
    lo -= half;
    hi += half;
  }
  const margin = (hi - lo) * 0.05;
  return [lo - margin, hi + margin];
}

interface Series {
  label: string;
  color: Rgb;
  values: number[];
}

interface Panel {
  title: string;
  x: number;
  width: number;
  series: Series[];
}

interface Tools {
  canvas: Canvas;
  drawing: Drawing;
  fill: Paint;
  stroke: Paint;
  text: Paint;
  small: Font;
  big: Font;
}

function fillRect(t: Tools, x: number, y: number, w: number, h: number, color: Rgb): void {
  t.fill.setColor(skColor(t.drawing.ck, color));
  t.canvas.drawRect(t.drawing.ck.XYWHRect(x, y, w, h), t.fill);
}

function drawText(
  t: Tools,
  s: string,
  x: number,
  y: number,
  font: Font,
  align: "left" | "center" | "right",
): void {
  const w = textWidth(font, s);
  const left = align === "left" ? x : align === "center" ? x - w / 2 : x - w;
  t.canvas.drawText(s, left, y, t.text, font);
}

function drawPanel(t: Tools, panel: Panel, epochs: number[], height: number): void {
  const { ck } = t.drawing;
  const px = panel.x + PANEL_MARGIN.left;
  const py = PANEL_MARGIN.top;
  const pw = panel.width - PANEL_MARGIN.left - PANEL_MARGIN.right;
  const ph = height - PANEL_MARGIN.top - PANEL_MARGIN.bottom;

  const xLo = epochs.length > 1 ? epochs[0] : epochs[0] - 0.5;
  const xHi = epochs.length > 1 ? epochs[epochs.length - 1] : epochs[0] + 0.5;
  const xPad = (xHi - xLo) * 0.03;
  const [x0, x1] = [xLo - xPad, xHi + xPad];
  const [y0, y1] = valueRange(panel.series.flatMap((s) => s.values));
  const sx = (v: number) => px + ((v - x0) / (x1 - x0)) * pw;
  const sy = (v: number) => py + ph - ((v - y0) / (y1 - y0)) * ph;

  // Grid lines and tick labels.
  const yTicks = niceTicks(y0, y1, 6);
  for (const v of yTicks.values) {
    const y = Math.round(sy(v));
    fillRect(t, px, y, pw, 1, GRID_GREY);
    fillRect(t, px - 5, y, 5, 1, AXIS_GREY);
    drawText(t, tickLabel(v, yTicks.step), px - 8, y + 4, t.small, "right");
  }
  const xTicks = niceTicks(Math.max(x0, 0), x1, 8, 1);
  for (const v of xTicks.values) {
    if (v < x0 || v > x1) continue;
    const x = Math.round(sx(v));
    fillRect(t, x, py, 1, ph, GRID_GREY);
    fillRect(t, x, py + ph, 1, 5, AXIS_GREY);
    drawText(t, tickLabel(v, xTicks.step), x, py + ph + 19, t.small, "center");
  }
  // Axes box.
  fillRect(t, px, py, pw, 1, AXIS_GREY);
  fillRect(t, px, py + ph, pw + 1, 1, AXIS_GREY);
  fillRect(t, px, py, 1, ph, AXIS_GREY);
  fillRect(t, px + pw, py, 1, ph, AXIS_GREY);

  // Titles.
  drawText(t, panel.title, px + pw / 2, 26, t.big, "center");
  drawText(t, "epoch", px + pw / 2, height - 12, t.small, "center");

  // Lines, clipped to the plot area; a non-finite value breaks the line.
  t.canvas.save();
  t.canvas.clipRect(ck.XYWHRect(px + 1, py + 1, pw - 1, ph - 1), ck.ClipOp.Intersect, true);
  for (const s of panel.series) {
    t.stroke.setColor(skColor(ck, s.color));
    t.fill.setColor(skColor(ck, s.color));
    const builder = new ck.PathBuilder();
    let open = false;
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) {
        open = false;
        return;
      }
      if (open) builder.lineTo(sx(epochs[i]), sy(v));
      else builder.moveTo(sx(epochs[i]), sy(v));
      open = true;
    });
    const path = builder.detachAndDelete();
    try {
      t.canvas.drawPath(path, t.stroke);
    } finally {
      path.delete();
    }
    if (epochs.length <= MARKER_EPOCHS) {
      s.values.forEach((v, i) => {
        if (Number.isFinite(v)) t.canvas.drawCircle(sx(epochs[i]), sy(v), 4, t.fill);
      });
    }
  }
  t.canvas.restore();

  // Legend, in the corner of the plot that covers the fewest points of the curves (sampled
  // along each line), as matplotlib's loc="best" does; upper right first.
  const rowH = 20;
  const labelW = Math.max(...panel.series.map((s) => textWidth(t.small, s.label)));
  const boxW = 12 + 28 + 8 + labelW + 12;
  const boxH = 10 + rowH * panel.series.length;
  const samples: [number, number][] = [];
  for (const s of panel.series) {
    for (let i = 0; i < s.values.length; i++) {
      const a = s.values[i], b = s.values[i + 1];
      if (!Number.isFinite(a)) continue;
      samples.push([sx(epochs[i]), sy(a)]);
      if (i + 1 < s.values.length && Number.isFinite(b)) {
        for (let k = 1; k < 20; k++) {
          const f = k / 20;
          samples.push([sx(epochs[i] + f * (epochs[i + 1] - epochs[i])), sy(a + f * (b - a))]);
        }
      }
    }
  }
  const corners: [number, number][] = [
    [px + pw - boxW - 10, py + 10],
    [px + 10, py + 10],
    [px + pw - boxW - 10, py + ph - boxH - 10],
    [px + 10, py + ph - boxH - 10],
  ];
  const covered = ([x, y]: [number, number]) =>
    samples.filter(([u, v]) => u >= x - 6 && u <= x + boxW + 6 && v >= y - 6 && v <= y + boxH + 6)
      .length;
  const [bx, by] = corners.reduce((best, c) => covered(c) < covered(best) ? c : best);
  fillRect(t, bx, by, boxW, boxH, [205, 205, 205]);
  fillRect(t, bx + 1, by + 1, boxW - 2, boxH - 2, [255, 255, 255]);
  panel.series.forEach((s, i) => {
    const y = by + 5 + rowH * i + rowH / 2;
    t.stroke.setColor(skColor(ck, s.color));
    t.canvas.drawLine(bx + 12, y, bx + 40, y, t.stroke);
    drawText(t, s.label, bx + 48, y + 4, t.small, "left");
  });
}

/**
 * Draws the loss and accuracy curves of a run as a PNG ({@link CURVES_SIZE}): left panel loss,
 * right panel accuracy in percent, each with its train and validation lines.
 *
 * @param records one record per epoch, in epoch order (at least one)
 * @returns the PNG bytes
 * @example
 * ```ts
 * import { renderCurves } from "./curves.ts";
 * const png = await renderCurves([{
 *   epoch: 1, train_loss: 1.9, train_acc: 0.3, val_loss: 1.7, val_acc: 0.38,
 * }]);
 * console.assert(png.length > 0);
 * ```
 */
export async function renderCurves(records: readonly CurvePoint[]): Promise<Uint8Array> {
  if (records.length === 0) {
    throw new RangeError("renderCurves needs at least one epoch record");
  }
  const epochs = records.map((r) => r.epoch);
  const { width, height } = CURVES_SIZE;
  const half = Math.floor(width / 2);
  const panels: Panel[] = [
    {
      title: "Loss",
      x: 0,
      width: half,
      series: [
        { label: "train", color: CURVE_COLORS.train, values: records.map((r) => r.train_loss) },
        { label: "validation", color: CURVE_COLORS.val, values: records.map((r) => r.val_loss) },
      ],
    },
    {
      title: "Accuracy (%)",
      x: half,
      width: width - half,
      series: [
        {
          label: "train",
          color: CURVE_COLORS.train,
          values: records.map((r) => 100 * r.train_acc),
        },
        {
          label: "validation",
          color: CURVE_COLORS.val,
          values: records.map((r) => 100 * r.val_acc),
        },
      ],
    },
  ];
  return await renderPng(width, height, (canvas, drawing, keep) => {
    const { ck } = drawing;
    const fill = keep(new ck.Paint());
    fill.setStyle(ck.PaintStyle.Fill);
    fill.setAntiAlias(true);
    const stroke = keep(new ck.Paint());
    stroke.setStyle(ck.PaintStyle.Stroke);
    stroke.setStrokeWidth(2.5);
    stroke.setStrokeJoin(ck.StrokeJoin.Round);
    stroke.setStrokeCap(ck.StrokeCap.Round);
    stroke.setAntiAlias(true);
    const text = keep(new ck.Paint());
    text.setColor(skColor(ck, TEXT_BLACK));
    text.setAntiAlias(true);
    const small = keep(new ck.Font(drawing.typeface, 13));
    const big = keep(new ck.Font(drawing.typeface, 17));
    const tools: Tools = { canvas, drawing, fill, stroke, text, small, big };
    for (const panel of panels) drawPanel(tools, panel, epochs, height);
  });
}
