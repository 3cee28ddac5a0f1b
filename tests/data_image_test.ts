import assert from "node:assert/strict";
import { jpeg } from "../deno_deps.ts";
import { encodePng } from "../deno_deps.ts";
import { decodeImage, resizeBilinear, sniffImageFormat } from "../data/image.ts";

/** The pixel bytes the PIL references below were made from. */
function ramp(w: number, h: number): Uint8Array {
  return Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 37 + 11) % 256);
}

Deno.test("resizeBilinear matches PIL's Image.resize(BILINEAR) exactly, down and up", () => {
  // Pillow 12.3: Image.frombytes("RGB", (5, 4), ramp).resize((3, 2), Image.BILINEAR).tobytes()
  const down = [
    90,
    127,
    148,
    126,
    102,
    131,
    161,
    135,
    110,
    157,
    147,
    137,
    132,
    145,
    133,
    124,
    140,
    130,
  ];
  assert.deepEqual(
    Array.from(
      resizeBilinear({ width: 5, height: 4, data: ramp(5, 4) }, { width: 3, height: 2 }).data,
    ),
    down,
  );
  // Image.frombytes("RGB", (3, 2), ramp).resize((5, 3), Image.BILINEAR).tobytes()
  const up = [
    11,
    48,
    85,
    55,
    92,
    129,
    122,
    159,
    196,
    189,
    72,
    109,
    233,
    14,
    51,
    50,
    87,
    124,
    94,
    131,
    117,
    161,
    198,
    107,
    151,
    111,
    97,
    144,
    53,
    90,
    88,
    125,
    162,
    132,
    169,
    104,
    199,
    236,
    17,
    112,
    149,
    84,
    54,
    91,
    128,
  ];
  assert.deepEqual(
    Array.from(
      resizeBilinear({ width: 3, height: 2, data: ramp(3, 2) }, { width: 5, height: 3 }).data,
    ),
    up,
  );
  const same = { width: 3, height: 2, data: ramp(3, 2) };
  assert.equal(resizeBilinear(same, { width: 3, height: 2 }), same);
});

Deno.test("decodeImage: PNG color types become RGB as PIL's convert('RGB') does", () => {
  const w = 3, h = 2, n = w * h;
  const dec = (png: Uint8Array) => Array.from(decodeImage(png).data);
  const gray = Uint8Array.from({ length: n }, (_, i) => i * 40);
  assert.deepEqual(
    dec(encodePng({ width: w, height: h, data: gray, channels: 1 })),
    Array.from(gray).flatMap((g) => [g, g, g]),
  );
  const la = Uint8Array.from({ length: n * 2 }, (_, i) => (i * 40 + 5) % 256);
  assert.deepEqual(
    dec(encodePng({ width: w, height: h, data: la, channels: 2 })),
    [5, 5, 5, 85, 85, 85, 165, 165, 165, 245, 245, 245, 69, 69, 69, 149, 149, 149],
  );
  const rgba = Uint8Array.from({ length: n * 4 }, (_, i) => (i * 21 + 3) % 256);
  assert.deepEqual(
    dec(encodePng({ width: w, height: h, data: rgba, channels: 4 })),
    [3, 24, 45, 87, 108, 129, 171, 192, 213, 255, 20, 41, 83, 104, 125, 167, 188, 209],
  );
  const rgb16 = Uint16Array.from({ length: n * 3 }, (_, i) => (i * 9000 + 123) % 65536);
  assert.deepEqual(
    dec(encodePng({ width: w, height: h, data: rgb16, depth: 16, channels: 3 })),
    [0, 35, 70, 105, 141, 176, 211, 246, 25, 60, 96, 131, 166, 201, 236, 15, 50, 86],
  );
  const palette = [[255, 0, 0], [0, 128, 0], [1, 2, 3]];
  const indexed = Uint8Array.from({ length: n }, (_, i) => i % 3);
  assert.deepEqual(
    dec(encodePng({ width: w, height: h, data: indexed, channels: 1, palette })),
    [255, 0, 0, 0, 128, 0, 1, 2, 3, 255, 0, 0, 0, 128, 0, 1, 2, 3],
  );
});

Deno.test("decodeImage: JPEG to RGB; truncated or foreign bytes throw", () => {
  const w = 24, h = 16;
  const rgba = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) rgba.set([30, 140, 220, 255], i * 4);
  const file = jpeg.encode({ data: rgba, width: w, height: h }, 95).data;
  assert.equal(sniffImageFormat(file), "jpeg");
  const img = decodeImage(file);
  assert.equal(img.width, w);
  assert.equal(img.height, h);
  assert.equal(img.data.length, w * h * 3);
  for (const [k, v] of [30, 140, 220].entries()) assert.ok(Math.abs(img.data[k] - v) <= 3);
  assert.throws(() => decodeImage(file.subarray(0, file.length >> 1)));
  assert.throws(
    () => decodeImage(new TextEncoder().encode("not an image at all")),
    /not a JPEG or PNG/,
  );
});
