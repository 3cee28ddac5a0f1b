/**
 * Small generated data for the data-pipeline tests: CIFAR binary records, temporary folders.
 *
 * @module
 */

/** A fresh folder under `.test-tmp/`; remove it with `Deno.remove(dir, { recursive: true })`. */
export async function tempDir(): Promise<string> {
  await Deno.mkdir(".test-tmp", { recursive: true });
  return await Deno.makeTempDir({ dir: ".test-tmp", prefix: "data-" });
}

/** The pixel value the generated record `i` holds in plane `c` (0 R, 1 G, 2 B) at index `p`. */
export function cifarPixel(i: number, c: number, p: number): number {
  return (i * 7 + c * 85 + p * 3) & 255;
}

/**
 * CIFAR records for the given labels: CIFAR-10 (one label byte) or, with `coarse`, CIFAR-100
 * (coarse byte, then fine byte). Pixels follow {@link cifarPixel} with `first` added to `i`.
 */
export function cifarBytes(labels: number[], coarse?: number[], first = 0): Uint8Array {
  const lb = coarse ? 2 : 1;
  const rec = lb + 3072;
  const out = new Uint8Array(labels.length * rec);
  labels.forEach((label, r) => {
    const o = r * rec;
    if (coarse) out[o] = coarse[r];
    out[o + lb - 1] = label;
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 1024; p++) out[o + lb + c * 1024 + p] = cifarPixel(first + r, c, p);
    }
  });
  return out;
}

/** Every file path under `dir`, recursively, relative to it. */
export async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listFiles(`${dir}/${e.name}`, rel));
    else out.push(rel);
  }
  return out.sort();
}
