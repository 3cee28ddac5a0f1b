// Run by tests/backend_test.ts as a subprocess: starts the backend and reports on stdout.
import { initBackend } from "../../backend/backend.ts";
import { tf } from "../../deps.ts";

const info = await initBackend({ log: (line) => console.log(line) });
const t = tf.tensor1d([1, 2, 3]).square();
console.log(`backend ${info.backend}: ${Array.from(await t.data())}`);
console.log(`XDG_RUNTIME_DIR=${Deno.env.get("XDG_RUNTIME_DIR")}`);
