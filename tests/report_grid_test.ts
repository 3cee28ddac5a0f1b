import assert from "node:assert/strict";
import { decodePng as decode } from "../deno_deps.ts";
import { type GridItem, gridLayout, renderPredictionGrid } from "../report/grid.ts";

const SIDE = 32;

/** A 32x32 image whose pixels depend on the item, the row and the column. */
function makeItem(i: number, right: boolean): GridItem {
  const pixels = new Uint8Array(SIDE * SIDE * 3);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const q = (y * SIDE + x) * 3;
      pixels[q] = (x * 8 + i * 3) & 255;
      pixels[q + 1] = (y * 8) & 255;
      pixels[q + 2] = (i * 16 + 5) & 255;
    }
  }
  const classes = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse"];
  const truth = classes[i % classes.length];
  const predicted = right ? truth : classes[(i + 3) % classes.length];
  return { pixels, height: SIDE, width: SIDE, predicted, truth };
}

interface Decoded {
  width: number;
  height: number;
  channels: number;
  data: ArrayLike<number>;
}

function pixel(img: Decoded, x: number, y: number): [number, number, number] {
  const at = (y * img.width + x) * img.channels;
  return [img.data[at], img.data[at + 1], img.data[at + 2]];
}

function countInBox(
  img: Decoded,
  box: { x: number; y: number; width: number; height: number },
  test: (r: number, g: number, b: number) => boolean,
): number {
  let n = 0;
  for (let y = box.y; y < box.y + box.height; y++) {
    for (let x = box.x; x < box.x + box.width; x++) if (test(...pixel(img, x, y))) n++;
  }
  return n;
}

const isGreen = (r: number, g: number, b: number) => g >= 100 && r <= 80 && b <= 80;
const isRed = (r: number, g: number, b: number) => r >= 150 && g <= 80 && b <= 80;

Deno.test("16 items make a 4x4 grid with green/red titles and the enlarged images", async () => {
  const items = Array.from({ length: 16 }, (_, i) => makeItem(i, i % 3 !== 1));
  const png = await renderPredictionGrid(items);
  const img = decode(png) as Decoded;
  const layout = gridLayout(16);
  assert.equal(layout.columns, 4);
  assert.equal(layout.rows, 4);
  assert.equal(img.width, layout.width);
  assert.equal(img.height, layout.height);
  // Default geometry: 128 px images plus padding, 4 columns and 4 rows.
  assert.equal(img.width, 4 * layout.cellWidth);
  assert.ok(img.width >= 4 * 128 && img.height >= 4 * (128 + 2 * 13));

  items.forEach((item, i) => {
    const cell = layout.cells[i];
    const green = countInBox(img, cell.title, isGreen);
    const red = countInBox(img, cell.title, isRed);
    if (item.predicted === item.truth) {
      assert.ok(green > 30, `cell ${i}: only ${green} green title pixels`);
      assert.equal(red, 0, `cell ${i}: red pixels in a right prediction's title`);
    } else {
      assert.ok(red > 30, `cell ${i}: only ${red} red title pixels`);
      assert.equal(green, 0, `cell ${i}: green pixels in a wrong prediction's title`);
    }
    // Each source pixel becomes a 4x4 block: its centre holds exactly the source colour.
    const scale = cell.image.width / SIDE;
    assert.equal(scale, 4);
    for (const [sx, sy] of [[0, 0], [31, 0], [0, 31], [17, 9], [31, 31]]) {
      const q = (sy * SIDE + sx) * 3;
      const expected = [item.pixels[q], item.pixels[q + 1], item.pixels[q + 2]];
      const got = pixel(img, cell.image.x + sx * scale + 1, cell.image.y + sy * scale + 2);
      assert.deepEqual(got, expected, `cell ${i}, source pixel (${sx}, ${sy})`);
    }
  });
});

Deno.test("fewer than 16 items: narrower or partly empty grids", async () => {
  const three = decode(await renderPredictionGrid([0, 1, 2].map((i) => makeItem(i, true))));
  const l3 = gridLayout(3);
  assert.equal(l3.columns, 3);
  assert.equal(l3.rows, 1);
  assert.equal(three.width, l3.width);
  assert.equal(three.height, l3.height);

  const six = decode(
    await renderPredictionGrid(
      [0, 1, 2, 3, 4, 5].map((i) => makeItem(i, i !== 5)),
      { cellSize: 64 },
    ),
  ) as Decoded;
  const l6 = gridLayout(6, { cellSize: 64 });
  assert.equal(l6.columns, 4);
  assert.equal(l6.rows, 2);
  assert.equal(six.width, l6.width);
  assert.equal(six.height, l6.height);
  assert.ok(countInBox(six, l6.cells[5].title, isRed) > 10);
  // Where cells 6 and 7 would be, the picture is blank white.
  const blank = {
    x: 2 * l6.cellWidth,
    y: l6.cellHeight,
    width: 2 * l6.cellWidth,
    height: l6.cellHeight,
  };
  assert.equal(countInBox(six, blank, (r, g, b) => r !== 255 || g !== 255 || b !== 255), 0);
  // 64 px cells: each source pixel is a 2x2 block.
  const item = makeItem(4, true);
  const q = (10 * SIDE + 20) * 3;
  assert.deepEqual(
    pixel(six, l6.cells[4].image.x + 20 * 2, l6.cells[4].image.y + 10 * 2),
    [item.pixels[q], item.pixels[q + 1], item.pixels[q + 2]],
  );
});

Deno.test("a non-square image keeps its aspect ratio, centred in its square", async () => {
  const pixels = new Uint8Array(16 * 32 * 3).fill(40); // 16 high, 32 wide, dark grey
  const png = await renderPredictionGrid([
    { pixels, height: 16, width: 32, predicted: "a", truth: "a" },
  ]);
  const img = decode(png) as Decoded;
  const box = gridLayout(1).cells[0].image;
  assert.deepEqual(pixel(img, box.x + 64, box.y + 64), [40, 40, 40]);
  assert.deepEqual(pixel(img, box.x + 64, box.y + 10), [255, 255, 255]);
});

Deno.test("bad grid input is refused", async () => {
  await assert.rejects(() => renderPredictionGrid([]), RangeError);
  const bad = { pixels: new Uint8Array(10), height: 32, width: 32, predicted: "a", truth: "b" };
  await assert.rejects(() => renderPredictionGrid([bad]), /pixel bytes/);
  assert.throws(() => gridLayout(4, { columns: 0 }), RangeError);
});

Deno.test("items without a true class: predicted class and probability in a neutral color", async () => {
  const base = makeItem(2, true);
  const items: GridItem[] = [
    { ...base, truth: undefined, probability: 0.873 },
    { ...base, truth: undefined },
    makeItem(3, false),
  ];
  const img = decode(await renderPredictionGrid(items)) as Decoded;
  const layout = gridLayout(3);
  const isInk = (r: number, g: number, b: number) => r < 200 || g < 200 || b < 200;
  const isGray = (r: number, g: number, b: number) => r === g && g === b;
  const halves = (i: number) => {
    const t = layout.cells[i].title;
    const h = Math.floor(t.height / 2);
    return [{ ...t, height: h }, { ...t, y: t.y + h, height: t.height - h }];
  };
  for (const i of [0, 1]) {
    const title = layout.cells[i].title;
    assert.equal(countInBox(img, title, isGreen) + countInBox(img, title, isRed), 0, `cell ${i}`);
    assert.equal(countInBox(img, title, (r, g, b) => !isGray(r, g, b)), 0, `cell ${i}: gray only`);
    const dark = countInBox(img, title, (r) => r <= 90);
    assert.ok(dark > 10, `cell ${i}: only ${dark} pixels of the dark gray title`);
  }
  // The probability is the second line; without it the second line is empty.
  const [top0, bottom0] = halves(0), [top1, bottom1] = halves(1);
  assert.ok(countInBox(img, top0, isInk) > 30 && countInBox(img, bottom0, isInk) > 30);
  assert.ok(countInBox(img, top1, isInk) > 30);
  assert.equal(countInBox(img, bottom1, isInk), 0);
  // An item with a truth beside them keeps the eval colors.
  assert.ok(countInBox(img, layout.cells[2].title, isRed) > 30);
});
