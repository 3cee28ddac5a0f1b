/**
 * GPU errors never pass in silence. WebGPU reports a failed shader compilation, a validation
 * error, an out-of-memory or a lost device asynchronously, to the device's `uncapturederror`
 * event or its `lost` promise, and tfjs listens to neither: the step went on with wrong numbers.
 * {@link watchDevice} records the first such error of the webgpu backend's device (with the
 * kernel whose pipeline failed, where a pipeline fails to build); the WebGPU layer provides it
 * as `ops/extensions.ts`'s `deviceError`, which the training and evaluation entry points check
 * after their reads (`throwIfDeviceFailed`), so the step throws it.
 *
 * A shader module's and a pipeline's build run inside a validation error scope (once per
 * pipeline: they are cached), which names the program that made them; errors of the dispatches, copies and buffers of a step
 * reach the `uncapturederror` listener with the GPU's message only.
 *
 * @module
 */
import type { WebGPUBackend } from "../../deps.ts";
import { listen, ORDER } from "./patches.ts";
import { internals, METHODS, type ProgramLike, registeredWebGpuBackend } from "./tfjs.ts";

/** What a watched device has reported. */
interface Watch {
  /** The first error not yet taken. */
  error: string | null;
  /** Why the device was lost (reported at every take from then on). */
  lost: string | null;
  /** The program being run now (its shader key), to name a pipeline that fails to build. */
  running: string | null;
  /** Removes the listeners. */
  off: (() => void)[];
}

const WATCHES = Symbol.for("regnet-vision.deviceErrors");
const store = globalThis as unknown as Record<symbol, WeakMap<GPUDevice, Watch>>;
const watches: WeakMap<GPUDevice, Watch> = store[WATCHES] ??= new WeakMap();

/** The kind of a GPUError, in words. */
function kindOf(error: GPUError): string {
  const name = error.constructor?.name ?? "";
  if (/OutOfMemory/.test(name)) return "out of memory";
  if (/Internal/.test(name)) return "internal error";
  return "validation error";
}

/** Keeps the first error of a watch. */
function record(w: Watch, message: string): void {
  w.error ??= message;
}

/** A program's name for a message: its shader key, shortened. */
function programName(p: ProgramLike | undefined): string | null {
  const key = (p as { shaderKey?: string } | undefined)?.shaderKey;
  if (!key) return null;
  return key.length > 160 ? `${key.slice(0, 157)}...` : key;
}

/** Starts watching the errors of the backend's device (idempotent per device). */
export function watchDevice(backend: WebGPUBackend): void {
  const be = internals(backend);
  const device = be.device;
  if (watches.has(device)) return;
  const w: Watch = { error: null, lost: null, running: null, off: [] };
  watches.set(device, w);
  const onError: EventListener = (e) => {
    const error = (e as unknown as GPUUncapturedErrorEvent).error;
    record(w, `WebGPU ${kindOf(error)}: ${error.message}`);
  };
  device.addEventListener("uncapturederror", onError);
  w.off.push(() => device.removeEventListener("uncapturederror", onError));
  device.lost.then((info) => {
    w.lost ??= `WebGPU device lost (${info.reason}): ${info.message}`;
  });
  // The program being run names the pipeline it builds.
  w.off.push(listen(be, METHODS.run, ORDER.deviceErrors, (_self, args, next) => {
    const outer = w.running;
    w.running = programName(args[0] as ProgramLike);
    try {
      return next(args);
    } finally {
      w.running = outer;
    }
  }));
  const scoped = (self: unknown, args: unknown[], next: (a: unknown[]) => unknown) => {
    const label = (args[0] as { label?: string }).label;
    const name = w.running ?? (label && label !== "Object" ? label : "a shader");
    (self as GPUDevice).pushErrorScope("validation");
    const made = next(args);
    (self as GPUDevice).popErrorScope().then((error) => {
      if (error) record(w, `WebGPU ${kindOf(error)} building ${name}: ${error.message}`);
    });
    return made;
  };
  for (const method of ["createShaderModule", "createComputePipeline"]) {
    w.off.push(listen(device, method, ORDER.deviceErrors, scoped));
  }
}

/** Stops watching the errors of the backend's device. */
export function unwatchDevice(backend: WebGPUBackend): void {
  const device = internals(backend).device;
  const w = watches.get(device);
  if (!w) return;
  for (const off of w.off) off();
  watches.delete(device);
}

/**
 * The first error the webgpu backend's device reported since the last call (then forgotten),
 * or the loss of the device (reported at every call from then on), as an Error; `null` when
 * there was none: the `deviceError` extension of `ops/extensions.ts`. Starts watching a backend
 * started after the install.
 *
 * @returns the error, or `null`
 */
export function deviceError(): Error | null {
  const backend = registeredWebGpuBackend();
  if (!backend) return null;
  watchDevice(backend);
  const w = watches.get(internals(backend).device)!;
  const message = w.lost ?? w.error;
  w.error = null;
  return message === null ? null : new Error(message);
}
