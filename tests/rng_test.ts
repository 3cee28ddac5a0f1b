import assert from "node:assert/strict";
import { Rng } from "../util/rng.ts";

Deno.test("Rng: seeded, restorable, uniform enough", () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xa = Array.from({ length: 5 }, () => a.nextU32());
  assert.deepEqual(xa, Array.from({ length: 5 }, () => b.nextU32()));
  assert.notDeepEqual(xa, Array.from({ length: 5 }, () => c.nextU32()));
  const saved = a.state();
  const next = a.next();
  assert.equal(Rng.fromState(saved).next(), next);
  let sum = 0;
  for (let i = 0; i < 10000; i++) sum += a.next();
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02);
  const perm = new Rng(1).shuffle(Array.from({ length: 100 }, (_, i) => i));
  assert.deepEqual([...perm].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
});
