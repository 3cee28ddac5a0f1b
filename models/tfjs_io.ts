/**
 * The TensorFlow.js LayersModel format (`model.json` + `weights.bin`) on Deno's file system, so
 * a tfjs user elsewhere can `tf.loadLayersModel` our models (with this module's custom layers
 * registered, which importing `mod.ts` does).
 *
 * @module
 */
import { tf } from "../deps.ts";
import { join } from "node:path";
import { writeFileAtomic } from "../util/files.ts";
import "./layers.ts"; // registers the custom layers with tfjs's serialization

const MODEL_JSON = "model.json";
const WEIGHTS_BIN = "weights.bin";

/**
 * A tfjs IO handler that saves to and loads from a folder: `DIR/model.json` and
 * `DIR/weights.bin`. Files are written to temporary names and renamed.
 *
 * @param dir the folder
 * @returns a handler for `model.save()` and `tf.loadLayersModel()`
 */
export function fileHandler(dir: string): tf.io.IOHandler {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      await Deno.mkdir(dir, { recursive: true });
      const weightData = artifacts.weightData ?? new ArrayBuffer(0);
      const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(weightData));
      const modelJson = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format ?? "layers-model",
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
      };
      await writeFileAtomic(join(dir, WEIGHTS_BIN), weights);
      await writeFileAtomic(
        join(dir, MODEL_JSON),
        new TextEncoder().encode(JSON.stringify(modelJson)),
      );
      return {
        modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts),
      };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      const path = join(dir, MODEL_JSON);
      const modelJson = JSON.parse(await Deno.readTextFile(path)) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs = manifest.flatMap((group) => group.weights);
        const buffers = await Promise.all(
          manifest.flatMap((group) => group.paths).map((p) => Deno.readFile(join(dir, p))),
        );
        const joined = tf.io.CompositeArrayBuffer.join(buffers.map((b) => b.slice().buffer));
        return [specs, joined];
      });
    },
  };
}

/**
 * Saves a model in the TensorFlow.js LayersModel format.
 *
 * @param model the model
 * @param dir the folder that gets `model.json` and `weights.bin`
 */
export async function saveLayersModel(model: tf.LayersModel, dir: string): Promise<void> {
  await model.save(fileHandler(dir));
}

/**
 * Loads a model saved by {@link saveLayersModel} (or any tfjs LayersModel folder).
 *
 * @param dir the folder holding `model.json`
 * @returns the model
 */
export function loadLayersModel(dir: string): Promise<tf.LayersModel> {
  return tf.loadLayersModel(fileHandler(dir));
}
