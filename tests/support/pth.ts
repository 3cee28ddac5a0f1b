/**
 * The `.pth` fixtures of `tests/fixtures/pth/`: for each model, the archive `torch.save` wrote
 * for its deterministic state dict, kept without its tensor data (`<stem>.json`, made by
 * `make_fixtures.py pth`). {@link rebuildPth} puts the data back from `detStateValue` and checks
 * every storage record against the SHA-256 of the bytes torch wrote, so the rebuilt archive holds
 * torch's own pickle and torch's own tensor bytes.
 *
 * @module
 */
import { zipSync } from "../../deps.ts";
import { detStateValue } from "../../bench/det.ts";

/** One zip entry of a skeleton: inline bytes, or a storage record to rebuild. */
type SkeletonEntry =
  | { name: string; base64: string }
  | { name: string; tensor: string; dtype: string; numel: number; sha256: string };

/** A skeleton file. */
export interface PthSkeleton {
  /** `"pth-skeleton-v1"`. */
  format: string;
  /** Our model name. */
  model: string;
  /** Output classes of the saved model. */
  num_classes: number;
  /** `null` (a state dict), `"module"` (DataParallel names), or the key holding the state dict. */
  wrap: string | null;
  /** The archive's entries, in torch's order. */
  entries: SkeletonEntry[];
}

const FIXTURES = new URL("../fixtures/pth/", import.meta.url);

/** Reads `tests/fixtures/pth/<stem>.json`. */
export async function readSkeleton(stem: string): Promise<PthSkeleton> {
  return JSON.parse(await Deno.readTextFile(new URL(`${stem}.json`, FIXTURES)));
}

/** The bytes of a small real `torch.save` file of `tests/fixtures/pth/`. */
export function readPthFixture(name: string): Promise<Uint8Array> {
  return Deno.readFile(new URL(name, FIXTURES));
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The `.pth` archive of a skeleton, storage records rebuilt from the deterministic values.
 *
 * @param skeleton a skeleton read by {@link readSkeleton}
 * @param shapes each state-dict entry's PyTorch shape
 * @returns the archive's bytes (stored, uncompressed, as torch writes it)
 * @throws when a rebuilt storage differs from what torch wrote
 */
export async function rebuildPth(
  skeleton: PthSkeleton,
  shapes: Map<string, number[]>,
): Promise<Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (const entry of skeleton.entries) {
    if ("base64" in entry) {
      files[entry.name] = Uint8Array.from(atob(entry.base64), (c) => c.charCodeAt(0));
      continue;
    }
    const shape = shapes.get(entry.tensor);
    if (!shape) throw new Error(`${skeleton.model}: no shape for ${entry.tensor}`);
    const values = detStateValue(entry.tensor, shape);
    const bytes = new Uint8Array(
      values.buffer as ArrayBuffer,
      values.byteOffset,
      values.byteLength,
    );
    const digest = hex(await crypto.subtle.digest("SHA-256", bytes));
    if (digest !== entry.sha256 || values.length !== entry.numel) {
      throw new Error(`${entry.name} (${entry.tensor}): rebuilt bytes differ from torch's`);
    }
    files[entry.name] = bytes;
  }
  return zipSync(
    Object.fromEntries(Object.entries(files).map(([k, v]) => [k, [v, { level: 0 }]])),
  );
}
