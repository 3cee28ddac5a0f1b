/**
 * The prediction grid of the reference notebook ("Visualisation des Prédictions"): test images in a
 * grid (4 columns by default), each enlarged and titled `Pred: <class>` / `True: <class>`, the
 * title green when the prediction is right and red when it is wrong, on a white background.
 * An item without a true class (a photo classified by `predict`) is titled with its predicted class
 * and that class's probability, in a neutral color.
 *
 * @module
 */
import { type Canvas, type Drawing, type Paint, renderPng, skColor, textWidth } from "./draw.ts";

/** One image of the grid with its predicted class name and, when known, its true class name. */
export interface GridItem {
  /** The image, height x width x 3 (RGB), 8 bits a channel, row major. */
  pixels: Uint8Array;
  /** Image height in pixels. */
  height: number;
  /** Image width in pixels. */
  width: number;
  /** Name of the predicted class. */
  predicted: string;
  /**
   * Name of the true class; absent for an image of unknown class, whose title is then the
   * predicted class and its {@link probability} in {@link GRID_COLORS}`.neutral`.
   */
  truth?: string;
  /** Probability of the predicted class (0..1), shown when there is no `truth`. */
  probability?: number;
}

/** Options of {@link renderPredictionGrid} and {@link gridLayout}. */
export interface GridOptions {
  /** Images per row; 4 by default (the reference code's 4x4 grid). */
  columns?: number;
  /** Side in pixels of the square each image is enlarged into (nearest neighbour); 128 by default. */
  cellSize?: number;
}

/** An axis-aligned rectangle in pixels; `x`, `y` is its top-left corner. */
export interface Box {
  /** Left edge. */
  x: number;
  /** Top edge. */
  y: number;
  /** Width. */
  width: number;
  /** Height. */
  height: number;
}

/** Where one grid cell's parts lie. */
export interface GridCell {
  /** Top-left corner of the whole cell. */
  origin: { x: number; y: number };
  /** The two title lines are drawn inside this box, and nothing else is. */
  title: Box;
  /** The square the image is enlarged into (a non-square image is centred in it). */
  image: Box;
}

/** The geometry of a prediction grid. */
export interface GridLayout {
  /** Width of the whole picture in pixels. */
  width: number;
  /** Height of the whole picture in pixels. */
  height: number;
  /** Number of columns actually used (at most the number of items). */
  columns: number;
  /** Number of rows. */
  rows: number;
  /** Width of one cell in pixels. */
  cellWidth: number;
  /** Height of one cell in pixels. */
  cellHeight: number;
  /** Nominal font size of the titles in pixels (long names are drawn smaller). */
  fontSize: number;
  /** Distance between the two title baselines in pixels. */
  lineHeight: number;
  /** One entry per item, row by row. */
  cells: GridCell[];
}

/**
 * Title colours (RGB): green when the prediction is right, red when it is wrong, dark gray for an
 * image of unknown class.
 */
export const GRID_COLORS: {
  right: [number, number, number];
  wrong: [number, number, number];
  neutral: [number, number, number];
} = {
  right: [0, 140, 0],
  wrong: [220, 0, 0],
  neutral: [60, 60, 60],
};

const DEFAULT_COLUMNS = 4;
const DEFAULT_CELL_SIZE = 128;
const MIN_FONT_SIZE = 8;

function checkPositiveInt(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
}

/**
 * Computes the geometry of a grid of `count` images: picture size, and for every cell its
 * origin, title box and image square. {@link renderPredictionGrid} draws with exactly this.
 *
 * @param count number of images (at least 1)
 * @param options columns (4) and cell size (128)
 * @returns the layout
 * @example
 * ```ts
 * import { gridLayout } from "./grid.ts";
 * const layout = gridLayout(16);
 * console.assert(layout.rows === 4 && layout.cells.length === 16);
 * ```
 */
export function gridLayout(count: number, options: GridOptions = {}): GridLayout {
  checkPositiveInt(count, "the number of grid items");
  const requestedColumns = options.columns ?? DEFAULT_COLUMNS;
  const cellSize = options.cellSize ?? DEFAULT_CELL_SIZE;
  checkPositiveInt(requestedColumns, "columns");
  checkPositiveInt(cellSize, "cellSize");
  if (cellSize < 16) throw new RangeError(`cellSize must be at least 16, got ${cellSize}`);

  const columns = Math.min(requestedColumns, count);
  const rows = Math.ceil(count / columns);
  const pad = Math.max(4, Math.round(cellSize / 16));
  const fontSize = Math.max(MIN_FONT_SIZE + 1, Math.round(cellSize / 10));
  const lineHeight = Math.ceil(fontSize * 1.3);
  const titleHeight = 2 * lineHeight;
  const gap = Math.max(2, Math.round(pad / 2));
  const cellWidth = cellSize + 2 * pad;
  const cellHeight = pad + titleHeight + gap + cellSize;

  const cells: GridCell[] = [];
  for (let i = 0; i < count; i++) {
    const ox = (i % columns) * cellWidth;
    const oy = Math.floor(i / columns) * cellHeight;
    cells.push({
      origin: { x: ox, y: oy },
      title: { x: ox + 1, y: oy + pad, width: cellWidth - 2, height: titleHeight },
      image: { x: ox + pad, y: oy + pad + titleHeight + gap, width: cellSize, height: cellSize },
    });
  }
  return {
    width: columns * cellWidth,
    height: rows * cellHeight + pad,
    columns,
    rows,
    cellWidth,
    cellHeight,
    fontSize,
    lineHeight,
    cells,
  };
}

function checkItem(item: GridItem, index: number): void {
  checkPositiveInt(item.height, `item ${index} height`);
  checkPositiveInt(item.width, `item ${index} width`);
  const expected = item.height * item.width * 3;
  if (item.pixels.length !== expected) {
    throw new RangeError(
      `item ${index}: ${item.pixels.length} pixel bytes for a ${item.height}x${item.width} RGB ` +
        `image (expected ${expected})`,
    );
  }
}

/** HWC RGB to RGBA, opaque. */
function toRgba(item: GridItem): Uint8Array {
  const n = item.width * item.height;
  const rgba = new Uint8Array(4 * n);
  for (let p = 0, q = 0; p < n; p++, q += 3) {
    rgba[4 * p] = item.pixels[q];
    rgba[4 * p + 1] = item.pixels[q + 1];
    rgba[4 * p + 2] = item.pixels[q + 2];
    rgba[4 * p + 3] = 255;
  }
  return rgba;
}

/**
 * Draws one title line centred in `box` at `baseline`, shrinking the font (to 3/4 of its
 * size at most) and then cutting the text with an ellipsis so that it never leaves the box.
 */
function drawTitleLine(
  canvas: Canvas,
  drawing: Drawing,
  paint: Paint,
  text: string,
  box: Box,
  baseline: number,
  fontSize: number,
): void {
  const font = new drawing.ck.Font(drawing.typeface, fontSize);
  try {
    const room = box.width - 4;
    const smallest = Math.max(MIN_FONT_SIZE, Math.round(fontSize * 0.75));
    let size = fontSize;
    while (size > smallest && textWidth(font, text) > room) font.setSize(--size);
    let shown = text;
    while (shown.length > 1 && textWidth(font, shown) > room) shown = shown.slice(0, -2) + "…";
    const w = textWidth(font, shown);
    canvas.drawText(shown, box.x + Math.max(0, (box.width - w) / 2), baseline, paint, font);
  } finally {
    font.delete();
  }
}

/** The title color and lines of an item: truth known (right or wrong) or unknown. */
function titleOf(item: GridItem): [[number, number, number], string[]] {
  if (item.truth === undefined) {
    const p = item.probability;
    return [GRID_COLORS.neutral, p === undefined ? [item.predicted] : [item.predicted, percent(p)]];
  }
  const right = item.predicted === item.truth;
  return [
    right ? GRID_COLORS.right : GRID_COLORS.wrong,
    [`Pred: ${item.predicted}`, `True: ${item.truth}`],
  ];
}

/** A probability as a percentage with one decimal, e.g. `87.3%`. */
function percent(p: number): string {
  return `${(100 * p).toFixed(1)}%`;
}

/**
 * Draws the prediction grid and returns it as a PNG file.
 *
 * @param items the images with their predicted and true class names (at least one); an item
 *   without `truth` is titled with its predicted class and `probability`, in a neutral color
 * @param options columns (4) and the side each image is enlarged to (128 px)
 * @returns the PNG bytes
 * @example
 * ```ts
 * import { renderPredictionGrid } from "./grid.ts";
 * const png = await renderPredictionGrid([
 *   { pixels: new Uint8Array(32 * 32 * 3), height: 32, width: 32, predicted: "cat", truth: "dog" },
 * ]);
 * console.assert(png.length > 0);
 * ```
 */
export async function renderPredictionGrid(
  items: GridItem[],
  options: GridOptions = {},
): Promise<Uint8Array> {
  if (items.length === 0) {
    throw new RangeError("renderPredictionGrid needs at least one item");
  }
  items.forEach(checkItem);
  const layout = gridLayout(items.length, options);
  return await renderPng(layout.width, layout.height, (canvas, drawing, keep) => {
    const { ck } = drawing;
    const paint = keep(new ck.Paint());
    paint.setAntiAlias(true);
    items.forEach((item, i) => {
      const cell = layout.cells[i];
      const [color, lines] = titleOf(item);
      paint.setColor(skColor(ck, color));
      const first = cell.title.y + Math.round(layout.fontSize * 0.95);
      const { fontSize, lineHeight } = layout;
      lines.forEach((line, j) => {
        drawTitleLine(canvas, drawing, paint, line, cell.title, first + j * lineHeight, fontSize);
      });

      // Enlarge with nearest neighbour, keeping the aspect ratio, centred in the square.
      const scale = Math.min(cell.image.width / item.width, cell.image.height / item.height);
      const dw = Math.max(1, Math.round(item.width * scale));
      const dh = Math.max(1, Math.round(item.height * scale));
      const dx = cell.image.x + Math.floor((cell.image.width - dw) / 2);
      const dy = cell.image.y + Math.floor((cell.image.height - dh) / 2);
      const image = ck.MakeImage(
        {
          width: item.width,
          height: item.height,
          alphaType: ck.AlphaType.Opaque,
          colorType: ck.ColorType.RGBA_8888,
          colorSpace: ck.ColorSpace.SRGB,
        },
        toRgba(item),
        4 * item.width,
      );
      if (image === null) throw new RangeError(`item ${i}: CanvasKit could not take the image`);
      try {
        canvas.drawImageRectOptions(
          image,
          ck.XYWHRect(0, 0, item.width, item.height),
          ck.XYWHRect(dx, dy, dw, dh),
          ck.FilterMode.Nearest,
          ck.MipmapMode.None,
          null,
        );
      } finally {
        image.delete();
      }
    });
  });
}
