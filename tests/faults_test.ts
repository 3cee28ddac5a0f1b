/**
 * Faults of the machine, injected and survived, on a 2-epoch ResNet20 run on the cpu backend
 * (8 generated training images at 8x8, batch 4): a failed write at every write of the run, `kill -9`
 * at seeded points (in the middle of file writes and of training steps), a flipped bit in each
 * file of a run folder, and an interrupted and a corrupted CIFAR download from a loopback server.
 * Every resumed run must end with the checkpoint and best weights byte-identical to those of an
 * uninterrupted run. docs/faults.md tabulates what this suite measures.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tarStream } from "../deno_deps.ts";
import { initBackend } from "../backend/backend.ts";
import { ensureCifar } from "../data/download.ts";
import { createModel } from "../models/registry.ts";
import { loadWeights } from "../models/weights.ts";
import { RUN_FILES } from "../run/records.ts";
import { resolveConfig, type TrainConfig } from "../training/config.ts";
import { train } from "../training/loop.ts";
import { UserError } from "../util/errors.ts";
import { setFileWriter, WriteError, writeFileAtomic } from "../util/files.ts";
import { Rng } from "../util/rng.ts";
import { cifarBytes, tempDir } from "./data_testutil.ts";

const SEED = 21;
const CHILD = fileURLToPath(new URL("./support/fault_train.ts", import.meta.url));

async function writeCifar(dir: string): Promise<void> {
  const labels = (n: number, k: number) => Array.from({ length: n }, (_, i) => (i * k) % 10);
  await Deno.writeFile(join(dir, "data_batch_1.bin"), cifarBytes(labels(8, 1)));
  await Deno.writeFile(join(dir, "test_batch.bin"), cifarBytes(labels(4, 3), undefined, 500));
}

function tinyConfig(data: string): TrainConfig {
  // 8x8 inputs: the cpu backend's convolutions are slow; a 2-epoch run takes seconds.
  return resolveConfig("resnet20", {
    data,
    epochs: 2,
    batchSize: 4,
    inputSize: 8,
    seed: 3,
    backend: "cpu",
  });
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

const sha = async (path: string) =>
  createHash("sha256").update(await Deno.readFile(path)).digest("hex");

/** The hashes of the checkpoint and the best weights: what a finished run must match. */
async function outcome(dir: string): Promise<{ checkpoint: string; best: string }> {
  return {
    checkpoint: await sha(join(dir, RUN_FILES.checkpoint)),
    best: await sha(join(dir, RUN_FILES.best)),
  };
}

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const name of await files(from)) await Deno.copyFile(join(from, name), join(to, name));
}

/** Flips bit `bit` of byte `at` of `path`. */
async function flipBit(path: string, at: number, bit: number): Promise<void> {
  const bytes = await Deno.readFile(path);
  bytes[at] ^= 1 << bit;
  await Deno.writeFile(path, bytes);
}

/** The byte range of a safetensors file's tensor data. */
async function dataSection(path: string): Promise<[number, number]> {
  const bytes = await Deno.readFile(path);
  const header = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  return [8 + header, bytes.length];
}

const lines: string[] = [];
const log = (line: string) => void lines.push(line);
let root = "";
let data = "";
let reference: { checkpoint: string; best: string };
/** The files written by an uninterrupted run, in order. */
let writes: string[] = [];

Deno.test.beforeAll(async () => {
  await initBackend({ backend: "cpu", log: null });
  root = await tempDir();
  data = join(root, "data");
  await Deno.mkdir(data);
  await writeCifar(data);
  const dir = join(root, "reference");
  setFileWriter(async (path, bytes) => {
    writes.push(path.slice(dir.length + 1).replace(/\.tmp-\d+$/, ""));
    await Deno.writeFile(path, bytes);
  });
  try {
    await train(tinyConfig(data), { out: dir, log });
  } finally {
    setFileWriter(null);
  }
  reference = await outcome(dir);
  writes = [...writes];
});

Deno.test.afterAll(async () => {
  await Deno.remove(root, { recursive: true });
});

Deno.test("faults: a failed write at every write site of a run is one line; --resume then ends as an uninterrupted run", async () => {
  const causes = [
    "No space left on device (os error 28): writefile 'x'",
    "Permission denied (os error 13): writefile 'x'",
    "Input/output error (os error 5): writefile 'x'",
  ];
  assert.ok(writes.length >= 10, `writes of a 2-epoch run: ${writes.join(", ")}`);
  // Every site once: the start's writes and the first epoch's (the second repeats them).
  const sites = writes.slice(0, writes.indexOf(RUN_FILES.curves) + 1);
  assert.deepEqual(new Set(sites), new Set(writes), "every kind of write");
  for (const [i, file] of sites.entries()) {
    const dir = join(root, `write-fail-${i + 1}`);
    let n = 0;
    setFileWriter(async (path, bytes) => {
      if (++n !== i + 1) return await Deno.writeFile(path, bytes);
      await Deno.writeFile(path, bytes.subarray(0, bytes.length >> 1)); // the disk fills
      throw new Error(causes[i % causes.length]);
    });
    let error: unknown;
    try {
      await train(tinyConfig(data), { out: dir, log });
    } catch (e) {
      error = e;
    } finally {
      setFileWriter(null);
    }
    const what = `write ${i + 1} (${file})`;
    assert.ok(error instanceof WriteError, `${what}: ${error}`);
    const message = error.message;
    assert.ok(!message.includes("\n"), `${what}: one line`);
    assert.ok(message.startsWith(`${join(dir, file)}: `), `${what}: names the file: ${message}`);
    const cause = causes[i % causes.length].split(":")[0].toLowerCase();
    assert.ok(message.includes(cause), `${what}: the cause: ${message}`);
    assert.ok(!message.includes(".tmp-"), `${what}: no temporary name: ${message}`);
    assert.deepEqual((await files(dir)).filter((f) => f.includes(".tmp-")), [], `${what}: tmp`);
    if (message.includes("--resume")) {
      assert.match(message, /the checkpoint of (epoch \d|the initial weights) is intact/, what);
      if (i % 3 === 0) assert.ok(message.includes("free space, then"), message);
      await train(tinyConfig(data), { log }, dir);
    } else {
      assert.ok(
        message.includes("no checkpoint yet") && message.includes(`remove ${dir}`),
        message,
      );
      await Deno.remove(dir, { recursive: true });
      await train(tinyConfig(data), { out: dir, log });
    }
    assert.deepEqual(await outcome(dir), reference, `${what}: resumed run equals uninterrupted`);
  }
  // eval.json, grids and exports go through the same writer: one line, nothing left over.
  const out = join(root, "export", "model.onnx");
  await Deno.mkdir(join(root, "export"));
  setFileWriter(() => Promise.reject(new Error("No space left on device (os error 28)")));
  try {
    await assert.rejects(() => writeFileAtomic(out, new Uint8Array(8)), (e: Error) => {
      assert.ok(e instanceof WriteError && e instanceof UserError);
      assert.equal(
        e.message,
        `${out}: no space left on device (os error 28); its previous content, if any, is intact`,
      );
      return true;
    });
  } finally {
    setFileWriter(null);
  }
  assert.deepEqual(await files(join(root, "export")), []);
});

/** Runs the child until it prints PAUSED at `point`, then kills it with SIGKILL. */
async function killAt(config: TrainConfig, dir: string, point: string): Promise<void> {
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--allow-read",
      "--allow-write=.test-tmp",
      "--allow-env=XDG_RUNTIME_DIR",
      CHILD,
      JSON.stringify(config),
      dir,
      point,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let seen = "";
  const decoder = new TextDecoder();
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  for await (const chunk of child.stdout) {
    seen += decoder.decode(chunk);
    if (seen.includes("PAUSED")) {
      child.kill("SIGKILL");
      break;
    }
  }
  const status = await child.status;
  clearTimeout(timer);
  assert.ok(seen.includes("PAUSED"), `${point}: never paused: ${seen} ${await stderr}`);
  assert.equal(status.signal, "SIGKILL", point);
}

Deno.test("faults: kill -9 at seeded points, inside checkpoint writes and steps; every resumed run equals an uninterrupted one", async () => {
  const rng = new Rng(SEED);
  // Writes after the initial checkpoint (killed before it, a run has nothing to resume).
  const after = writes.map((f, i) => ({ f, k: i + 1 })).slice(3);
  const inCheckpoint = after.filter((w) => w.f === RUN_FILES.checkpoint)
    .flatMap(({ k }) => [`write:${k}:half`, `write:${k}:full`]);
  const others = [
    ...after.filter((w) => w.f !== RUN_FILES.checkpoint).map(({ k }) => `write:${k}:half`),
    ...["1:1", "1:2", "2:1", "2:2"].map((s) => `step:${s}`),
  ];
  const order = rng.shuffle(Int32Array.from(others, (_, i) => i));
  const points = [
    ...inCheckpoint,
    ...[...order.subarray(0, 10 - inCheckpoint.length)]
      .map((i) => others[i]),
  ];
  assert.ok(points.length >= 10 && inCheckpoint.length >= 4, points.join(" "));
  const config = tinyConfig(data);
  for (const [i, point] of points.entries()) {
    const dir = join(root, `kill-${i}`);
    await killAt(config, dir, point);
    const resumed = lines.length;
    await train(config, { log }, dir);
    assert.ok(
      lines.slice(resumed).some((l) => l.startsWith(`resuming ${dir} after epoch`)),
      `${point}: ${lines.slice(resumed).join("\n")}`,
    );
    assert.deepEqual(await outcome(dir), reference, `${point}: resumed run equals uninterrupted`);
    assert.deepEqual((await files(dir)).filter((f) => f.includes(".tmp-")), [], point);
  }
});

Deno.test("faults: a flipped bit in each file of a run folder", async (t) => {
  const rng = new Rng(SEED + 1);
  const done = join(root, "reference");
  const config = tinyConfig(data);

  await t.step(
    "checkpoint.safetensors (tensor bytes): --resume names the tensor, falls back to the previous checkpoint and ends as an uninterrupted run",
    async () => {
      const dir = join(root, "flip-checkpoint");
      await copyDir(done, dir);
      const [from, to] = await dataSection(join(dir, RUN_FILES.checkpoint));
      await flipBit(join(dir, RUN_FILES.checkpoint), from + rng.int(to - from), rng.int(8));
      const start = lines.length;
      const result = await train(config, { log }, dir);
      const said = lines.slice(start);
      const fallback = said.find((l) => l.includes("resuming from the previous checkpoint"));
      assert.ok(fallback, said.join("\n"));
      assert.match(fallback, /checkpoint\.safetensors: tensor \S+ fails its CRC-32 checksum/);
      assert.ok(fallback.includes(RUN_FILES.previous) && fallback.includes("(the checkpoint of "));
      assert.equal(result.epochs, 2);
      assert.deepEqual(await outcome(dir), reference, "epoch 2 redone from epoch 1");
    },
  );

  await t.step("checkpoint.safetensors (header): the same fallback", async () => {
    const dir = join(root, "flip-header");
    await copyDir(done, dir);
    const [dataStart] = await dataSection(join(dir, RUN_FILES.checkpoint));
    await flipBit(join(dir, RUN_FILES.checkpoint), 8 + rng.int(dataStart - 8), 6);
    const start = lines.length;
    await train(config, { log }, dir);
    assert.ok(lines.slice(start).some((l) => l.includes("resuming from the previous")));
    assert.deepEqual(await outcome(dir), reference);
  });

  await t.step(
    "checkpoint.prev.safetensors: unused while the latest is good; both bad is one line naming both",
    async () => {
      const dir = join(root, "flip-prev");
      await copyDir(done, dir);
      const prev = join(dir, RUN_FILES.previous);
      const [from, to] = await dataSection(prev);
      await flipBit(prev, from + rng.int(to - from), rng.int(8));
      await train(config, { log }, dir);
      assert.deepEqual(await outcome(dir), reference);
      const [cFrom, cTo] = await dataSection(join(dir, RUN_FILES.checkpoint));
      await flipBit(join(dir, RUN_FILES.checkpoint), cFrom + rng.int(cTo - cFrom), rng.int(8));
      await assert.rejects(() => train(config, { log }, dir), (e: Error) => {
        assert.ok(e instanceof UserError, String(e));
        assert.ok(!e.message.includes("\n"));
        assert.match(
          e.message,
          /checkpoint\.safetensors: tensor .*; and .*checkpoint\.prev\.safetensors: tensor /,
        );
        return true;
      });
    },
  );

  await t.step(
    "best.safetensors: loadWeights (eval, export, predict) is one line naming the tensor",
    async () => {
      const dir = join(root, "flip-best");
      await copyDir(done, dir);
      const best = join(dir, RUN_FILES.best);
      const [from, to] = await dataSection(best);
      await flipBit(best, from + rng.int(to - from), rng.int(8));
      const model = createModel("resnet20", { numClasses: 10 });
      try {
        await assert.rejects(() => loadWeights(model, best), (e: Error) => {
          assert.ok(e instanceof UserError, String(e));
          assert.match(e.message, new RegExp(`^${best}: tensor \\S+ fails its CRC-32 checksum`));
          return true;
        });
        await loadWeights(model, join(done, RUN_FILES.best)); // the intact file loads
      } finally {
        model.dispose();
      }
    },
  );

  await t.step(
    "config.json and metrics.jsonl: a flip that breaks the JSON is one line naming the file",
    async () => {
      for (const file of [RUN_FILES.config, RUN_FILES.metrics]) {
        const dir = join(root, `flip-${file}`);
        await copyDir(done, dir);
        const text = await Deno.readTextFile(join(dir, file));
        // The bit that turns the first `{` into `z`: the file is no longer JSON.
        await flipBit(join(dir, file), text.indexOf("{"), 0);
        await assert.rejects(() => train(config, { log }, dir), (e: Error) => {
          assert.ok(e instanceof UserError, String(e));
          assert.ok(e.message.includes(join(dir, file)) && !e.message.includes("\n"), e.message);
          return true;
        });
      }
    },
  );

  await t.step("curves.png: never read; --resume goes on and redraws it", async () => {
    const dir = join(root, "flip-curves");
    await copyDir(done, dir);
    const curves = join(dir, RUN_FILES.curves);
    const size = (await Deno.stat(curves)).size;
    await flipBit(curves, rng.int(size), rng.int(8));
    const result = await train({ ...config, epochs: 3 }, { log }, dir);
    assert.equal(result.epochs, 3);
    assert.notEqual(await sha(curves), await sha(join(done, RUN_FILES.curves)));
  });
});

/** A small CIFAR-10 archive laid out like the official one. */
async function makeArchive(): Promise<Uint8Array<ArrayBuffer>> {
  const pack = tarStream.pack();
  for (let b = 1; b <= 5; b++) {
    pack.entry({ name: `cifar-10-batches-bin/data_batch_${b}.bin` }, cifarBytes([b, 1, 2]));
  }
  pack.entry({ name: "cifar-10-batches-bin/test_batch.bin" }, cifarBytes([7, 8, 9]));
  pack.finalize();
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  for await (const chunk of pack) chunks.push(chunk as Uint8Array<ArrayBuffer>);
  const gz = new Blob(chunks).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(gz).arrayBuffer());
}

Deno.test("faults: an interrupted and a corrupted CIFAR download from 127.0.0.1", async () => {
  const archive = await makeArchive();
  const md5 = createHash("md5").update(archive).digest("hex");
  let mode: "cut" | "corrupt" | "ok" = "cut";
  const ranges: (string | null)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const range = req.headers.get("range");
    ranges.push(range);
    const from = Number(range?.match(/^bytes=(\d+)-$/)?.[1] ?? 0);
    const body = archive.slice(from);
    if (mode === "corrupt") body[body.length >> 1] ^= 0x10;
    const headers: Record<string, string> = { "content-length": String(body.length) };
    if (from) headers["content-range"] = `bytes ${from}-${archive.length - 1}/${archive.length}`;
    const status = from ? 206 : 200;
    if (mode !== "cut") return new Response(body, { status, headers });
    // The connection drops after half the bytes.
    const half = body.subarray(0, body.length >> 1);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(half);
      },
      pull(c) {
        c.error(new Error("connection reset"));
      },
    });
    return new Response(stream, { status, headers });
  });
  const url = `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`;
  const dir = await tempDir();
  try {
    const oneLine = (e: Error) => {
      assert.ok(e instanceof UserError, String(e));
      assert.ok(!e.message.includes("\n"), e.message);
      return true;
    };
    const opts = { variant: "cifar10" as const, url, md5, log: null };
    // Interrupted: one line, the partial file kept; the retry resumes with a range request.
    await assert.rejects(() => ensureCifar(join(dir, "a"), opts), (e: Error) => {
      oneLine(e);
      assert.match(e.message, /run again to resume/);
      return true;
    });
    assert.ok((await files(join(dir, "a"))).includes("cifar-10-binary.tar.gz.partial"));
    mode = "ok";
    await ensureCifar(join(dir, "a"), opts);
    assert.match(ranges.at(-1) ?? "", /^bytes=\d+-$/, "resumed with a range");
    assert.deepEqual(await files(join(dir, "a", "cifar-10-batches-bin")), [
      "data_batch_1.bin",
      "data_batch_2.bin",
      "data_batch_3.bin",
      "data_batch_4.bin",
      "data_batch_5.bin",
      "test_batch.bin",
    ]);
    // Corrupted: one line, nothing kept; the retry downloads anew.
    mode = "corrupt";
    await assert.rejects(() => ensureCifar(join(dir, "b"), opts), (e: Error) => {
      oneLine(e);
      assert.match(e.message, /failed its checksum/);
      return true;
    });
    assert.deepEqual(await files(join(dir, "b")), []);
    mode = "ok";
    await ensureCifar(join(dir, "b"), opts);
    assert.equal(ranges.at(-1), null, "downloaded anew");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
