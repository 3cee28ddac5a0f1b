// Run by tests/backend_test.ts as a subprocess: starts the backend and reports on stdout.
import { initBackend } from "../../backend/backend.ts";
import { tf } from "../../deps.ts";

const info = await initBackend({ log: (line) => console.log(line) });
const t = tf.tensor1d([1, 2, 3]).square();
console.log(`backend ${info.backend}: ${Array.from(await t.data())}`);
console.log(`XDG_RUNTIME_DIR=${Deno.env.get("XDG_RUNTIME_DIR")}`);
// A switch to tfjs's cpu backend after the start, as tests and users do: still quiet.
await tf.setBackend("cpu");
const c = tf.tensor1d([4, 5]);
console.log(`then ${tf.getBackend()}: ${Array.from(await c.data())}`);
tf.dispose([t, c]);
