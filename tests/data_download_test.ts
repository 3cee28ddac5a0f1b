import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { tarStream } from "../deno_deps.ts";
import { loadCifar } from "../data/cifar.ts";
import { ensureCifar } from "../data/download.ts";
import { UserError } from "../util/errors.ts";
import { cifarBytes, listFiles, tempDir } from "./data_testutil.ts";

/** A small CIFAR-10 archive laid out like the official one. */
async function makeArchive(): Promise<Uint8Array<ArrayBuffer>> {
  const pack = tarStream.pack();
  pack.entry({ name: "cifar-10-batches-bin/", type: "directory" });
  for (let b = 1; b <= 5; b++) {
    const labels = Array.from({ length: 4 }, (_, i) => (b + i) % 10);
    pack.entry({ name: `cifar-10-batches-bin/data_batch_${b}.bin` }, cifarBytes(labels));
  }
  pack.entry({ name: "cifar-10-batches-bin/test_batch.bin" }, cifarBytes([7, 8, 9]));
  pack.entry({ name: "cifar-10-batches-bin/batches.meta.txt" }, "p\nq\nr\ns\nt\nu\nv\nw\nx\ny\n\n");
  pack.finalize();
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  for await (const chunk of pack) chunks.push(chunk as Uint8Array<ArrayBuffer>);
  const tar = new Uint8Array(await new Blob(chunks).arrayBuffer());
  const gz = new Blob([tar]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(gz).arrayBuffer());
}

const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("hex");

/** Serves `body()` on loopback, honoring `Range: bytes=N-`; records each request's Range. */
function serve(body: () => Uint8Array) {
  const requests: (string | null)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const range = req.headers.get("range");
    requests.push(range);
    const all = body();
    const m = range?.match(/^bytes=(\d+)-$/);
    if (m) {
      const from = Number(m[1]);
      if (from >= all.length) return new Response(null, { status: 416 });
      return new Response(all.slice(from), {
        status: 206,
        headers: { "content-range": `bytes ${from}-${all.length - 1}/${all.length}` },
      });
    }
    return new Response(all.slice());
  });
  const url = `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`;
  return { server, requests, url };
}

Deno.test("download over loopback: extracted, loadable, and not fetched again", async () => {
  const dir = await tempDir();
  const archive = await makeArchive();
  const { server, requests, url } = serve(() => archive);
  try {
    const lines: string[] = [];
    const root = join(dir, "data");
    const folder = await ensureCifar(root, {
      variant: "cifar10",
      url,
      md5: md5(archive),
      log: (l) => lines.push(l),
    });
    assert.equal(folder, join(root, "cifar-10-batches-bin"));
    assert.equal(requests.length, 1);
    const files = await listFiles(root);
    assert.ok(files.includes("cifar-10-binary.tar.gz"), "the checked archive is kept");
    assert.ok(!files.some((f) => f.endsWith(".partial") || f.includes(".extract-")), files.join());
    const test = await loadCifar(root, { variant: "cifar10", split: "test", log: null });
    assert.deepEqual(Array.from(test.labels), [7, 8, 9]);
    assert.equal(test.classNames[0], "p");
    const train = await loadCifar(folder, { variant: "cifar10", split: "train", log: null });
    assert.equal(train.size, 20);
    assert.ok(lines.some((l) => /checksum ok/.test(l)));

    const again = await ensureCifar(root, {
      variant: "cifar10",
      url,
      md5: md5(archive),
      log: null,
    });
    assert.equal(again, folder);
    assert.equal(requests.length, 1, "files present: no request");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download over loopback: a corrupted archive fails its checksum and leaves nothing", async () => {
  const dir = await tempDir();
  const archive = await makeArchive();
  let served: Uint8Array = archive.slice();
  served[served.length >> 1] ^= 0x5a;
  const { server, requests, url } = serve(() => served);
  try {
    const root = join(dir, "data");
    await assert.rejects(
      () => ensureCifar(root, { variant: "cifar10", url, md5: md5(archive), log: null }),
      (e) => e instanceof UserError && /checksum/.test(e.message) && e.message.includes(url),
    );
    assert.deepEqual(await listFiles(root), [], "no archive, partial file or .bin left");
    await assert.rejects(
      () => loadCifar(root, { variant: "cifar10", split: "test", log: null }),
      UserError,
    );
    // A later run with a good archive succeeds from scratch.
    served = archive;
    const folder = await ensureCifar(root, {
      variant: "cifar10",
      url,
      md5: md5(archive),
      log: null,
    });
    assert.equal(
      (await loadCifar(folder, { variant: "cifar10", split: "test", log: null })).size,
      3,
    );
    assert.equal(requests.length, 2);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download over loopback: a partial file is resumed with a range request", async () => {
  const dir = await tempDir();
  const archive = await makeArchive();
  const { server, requests, url } = serve(() => archive);
  try {
    const root = join(dir, "data");
    await Deno.mkdir(root);
    const half = archive.length >> 1;
    await Deno.writeFile(join(root, "cifar-10-binary.tar.gz.partial"), archive.subarray(0, half));
    const folder = await ensureCifar(root, {
      variant: "cifar10",
      url,
      md5: md5(archive),
      log: null,
    });
    assert.deepEqual(requests, [`bytes=${half}-`]);
    assert.equal(
      (await loadCifar(folder, { variant: "cifar10", split: "test", log: null })).size,
      3,
    );

    // A leftover partial file that is not a prefix of the archive: checksum error, then removed.
    const root2 = join(dir, "data2");
    await Deno.mkdir(root2);
    await Deno.writeFile(
      join(root2, "cifar-10-binary.tar.gz.partial"),
      new Uint8Array(half).fill(1),
    );
    await assert.rejects(
      () => ensureCifar(root2, { variant: "cifar10", url, md5: md5(archive), log: null }),
      /checksum/,
    );
    assert.deepEqual(await listFiles(root2), []);
    await ensureCifar(root2, { variant: "cifar10", url, md5: md5(archive), log: null });
    assert.equal(requests.at(-1), null, "started over without a range");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download: HTTP errors and a network failure are one-line UserErrors", async () => {
  const dir = await tempDir();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("gone", { status: 404 }),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`;
    await assert.rejects(
      () => ensureCifar(join(dir, "d"), { variant: "cifar10", url, log: null }),
      (e) => e instanceof UserError && /HTTP 404/.test(e.message) && !e.message.includes("\n"),
    );
    const failing: typeof fetch = () => Promise.reject(new TypeError("connection refused"));
    await assert.rejects(
      () => ensureCifar(join(dir, "d"), { variant: "cifar10", fetchFn: failing, log: null }),
      (e) =>
        e instanceof UserError && /connection refused/.test(e.message) && /--data/.test(e.message),
    );
    assert.deepEqual(await listFiles(join(dir, "d")), []);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("download: an archive that passes its checksum but is broken leaves no .bin files", async () => {
  const dir = await tempDir();
  const archive = (await makeArchive()).slice(0, 300); // truncated gzip stream
  const { server, url } = serve(() => archive);
  try {
    const root = join(dir, "data");
    await assert.rejects(
      () => ensureCifar(root, { variant: "cifar10", url, md5: md5(archive), log: null }),
      (e) => e instanceof UserError && /could not extract/.test(e.message),
    );
    assert.deepEqual(await listFiles(root), ["cifar-10-binary.tar.gz"], "no temp folder, no .bin");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
