// The page of `deno task serve`: loads the run's model and weights into the toolkit bundle,
// classifies the photos dropped or picked (top 3), and for a CIFAR run shows a grid of test
// images. State for scripts that drive the page: document.body.dataset.state ("ready" or
// "error") and each result's data-top1 attribute.
import * as rv from "./regnet-vision.js";

const $ = (id) => document.getElementById(id);

/**
 * RGB bytes (HWC) of a photo resized to `size` x `size` as `deno task predict` and the data
 * loaders resize it: the browser decodes at the photo's own size (no colour conversion), then the
 * toolkit's resize (PIL's antialiased bilinear, `resizeBilinear`).
 */
async function rgbOf(blob, size) {
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    data[j] = rgba[i];
    data[j + 1] = rgba[i + 1];
    data[j + 2] = rgba[i + 2];
  }
  return rv.resizeBilinear({ width, height, data }, { width: size, height: size }).data;
}

/** The top `k` classes of `n` images (RGB bytes, `imageSize` square), as `predict` gives them. */
function classify(model, run, pixels, n, k) {
  return rv.classifyImages(model, { pixels, count: n, size: run.imageSize }, {
    inputSize: run.inputSize,
    top: k,
  });
}

async function showGrid(model, run) {
  $("grid-section").hidden = false;
  if (!run.grid.available) {
    $("grid-note").textContent = run.grid.reason;
    return;
  }
  const bytes = new Uint8Array(await (await fetch("./grid.bin")).arrayBuffer());
  const per = run.imageSize * run.imageSize * 3;
  const n = bytes.length / (4 + per);
  const labels = new Int32Array(bytes.buffer.slice(0, n * 4));
  const pixels = bytes.subarray(n * 4);
  const predictions = await classify(model, run, pixels, n, 1);
  for (let i = 0; i < n; i++) {
    const fig = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = run.imageSize;
    const img = new ImageData(run.imageSize, run.imageSize);
    for (let p = 0; p < run.imageSize * run.imageSize; p++) {
      img.data.set(pixels.subarray(i * per + p * 3, i * per + p * 3 + 3), p * 4);
      img.data[p * 4 + 3] = 255;
    }
    canvas.getContext("2d").putImageData(img, 0, 0);
    const pred = predictions[i].classes[0];
    const caption = document.createElement("figcaption");
    caption.textContent = `${run.classes[pred]}/${run.classes[labels[i]]}`;
    caption.className = pred === labels[i] ? "right" : "wrong";
    fig.append(canvas, caption);
    $("grid").append(fig);
  }
}

async function onFiles(model, run, files) {
  for (const file of files) {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    const text = document.createElement("span");
    text.textContent = `${file.name}: classifying...`;
    li.append(img, text);
    $("results").append(li);
    try {
      const t0 = performance.now();
      const [p] = await classify(model, run, await rgbOf(file, run.imageSize), 1, 3);
      text.textContent = `${file.name}: ` +
        p.classes.map((c, i) => `${run.classes[c]} ${(100 * p.probabilities[i]).toFixed(1)}%`)
          .join(", ") +
        ` (${(performance.now() - t0).toFixed(0)} ms)`;
      li.dataset.top1 = run.classes[p.classes[0]];
    } catch (e) {
      text.textContent = `${file.name}: ${e.message}`;
      text.className = "error";
      li.dataset.error = e.message;
    }
  }
}

async function main() {
  const info = await rv.startBackend();
  const kind = info.fallbackAdapter ? " (software fallback adapter)" : "";
  $("status").textContent = `backend: ${info.backend} on "${info.adapter}"${kind}` +
    (info.notes.length ? `; passed over: ${info.notes.join("; ")}` : "");
  rv.webGpuDevice()?.addEventListener("uncapturederror", (e) => {
    console.error(`GPU error: ${e.error.message}`);
  });
  const run = await (await fetch("./run.json")).json();
  const bytes = new Uint8Array(await (await fetch("./weights.safetensors")).arrayBuffer());
  const model = rv.createModel(run.model, {
    numClasses: run.classes.length,
    inputSize: run.inputSize,
  });
  const { tensors } = await rv.readStateDict(bytes, "weights.safetensors");
  rv.assignStateDict(model, tensors, "weights.safetensors");
  $("run").textContent = `run ${run.run}: ${run.model}, ${run.classes.length} classes, ` +
    `input ${run.inputSize}x${run.inputSize} (${run.dataset})`;
  const input = $("files");
  input.disabled = false;
  input.addEventListener("change", () => onFiles(model, run, [...input.files]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    onFiles(model, run, [...e.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
  });
  document.body.dataset.state = "ready";
  if (run.grid) await showGrid(model, run);
  document.body.dataset.grid = "done";
}

main().catch((e) => {
  $("status").textContent = `error: ${e.message}`;
  $("status").className = "error";
  document.body.dataset.state = "error";
  console.error(e);
});
