/**
 * Command-line flags for the entrypoints: one table of flags with their types and help, parsed
 * with `node:util`'s `parseArgs` (standing in for `@std/cli`, which JSR would serve). Unknown
 * flags and bad values are one-line errors that list what is valid.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { permissionMessage, TASK_PERMISSIONS, UserError } from "../util/errors.ts";

/** One flag: its kind, its help line and, for `choice`, the valid values. */
export interface FlagSpec {
  /**
   * `string`, `int` (positive integer), `uint` (non-negative integer), `number`, `bool`, `ints`
   * (comma list), `choice`.
   */
  kind: "string" | "int" | "uint" | "number" | "bool" | "ints" | "choice";
  /** One line of help. */
  help: string;
  /** Valid values of a `choice` flag. */
  choices?: readonly string[];
  /** Whether the flag may be given several times or take several positional values. */
  multiple?: boolean;
}

/** Parsed flag values by flag name. */
export type FlagValues = Record<
  string,
  string | number | boolean | number[] | string[] | undefined
>;

/**
 * Parses `args` against `specs`.
 *
 * @param args the command line (`Deno.args`)
 * @param specs the valid flags
 * @returns the values given (absent flags are `undefined`) and the positional arguments
 */
export function parseFlags(
  args: string[],
  specs: Record<string, FlagSpec>,
): { values: FlagValues; positionals: string[] } {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {};
  for (const [name, spec] of Object.entries(specs)) {
    options[name] = {
      type: spec.kind === "bool" ? "boolean" : "string",
      multiple: spec.multiple === true,
    };
  }
  // `--epochs -3`: a value that looks like a negative number belongs to its flag (parseArgs
  // would call it ambiguous), so that the flag's own check reports it.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : undefined;
    const spec = name !== undefined ? specs[name] : undefined;
    const next = args[i + 1];
    if (spec && spec.kind !== "bool" && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(`${args[i]}=${next}`);
      i++;
    } else joined.push(args[i]);
  }
  let parsed;
  try {
    parsed = parseArgs({ args: joined, options, allowPositionals: true, strict: true });
  } catch (e) {
    const message = (e as Error).message;
    const unknown = message.match(/Unknown option '([^']+)'/);
    const valid = Object.keys(specs).map((n) => `--${n}`).join(", ");
    if (unknown) throw new UserError(`unknown flag ${unknown[1]}; valid flags: ${valid}`);
    throw new UserError(`${message.split("\n")[0]}; valid flags: ${valid}`);
  }
  const values: FlagValues = {};
  for (const [name, raw] of Object.entries(parsed.values)) {
    const spec = specs[name];
    values[name] = spec.multiple ? (raw as string[]) : convert(name, spec, raw as string | boolean);
  }
  return { values, positionals: parsed.positionals };
}

function convert(name: string, spec: FlagSpec, raw: string | boolean): FlagValues[string] {
  const bad = (what: string): never => {
    throw new UserError(`--${name}: expected ${what}, got "${raw}"`);
  };
  switch (spec.kind) {
    case "bool":
      return raw as boolean;
    case "string":
      return raw as string;
    case "int": {
      const v = Number(raw);
      return Number.isInteger(v) && v > 0 ? v : bad("a positive integer");
    }
    case "uint": {
      const v = Number(raw);
      return raw !== "" && Number.isInteger(v) && v >= 0 ? v : bad("a non-negative integer");
    }
    case "number": {
      const v = Number(raw);
      return raw !== "" && Number.isFinite(v) && v >= 0 ? v : bad("a non-negative number");
    }
    case "ints": {
      if (raw === "" || raw === "none") return [];
      const list = String(raw).split(",").map(Number);
      return list.every((v) => Number.isInteger(v) && v >= 0)
        ? list
        : bad("a comma-separated list of non-negative integers (or none)");
    }
    case "choice":
      return spec.choices!.includes(raw as string)
        ? raw as string
        : bad(`one of ${spec.choices!.join(", ")}`);
  }
}

/**
 * The help text: usage line, then one line per flag.
 *
 * @param usage the usage line
 * @param specs the flags
 * @returns the text
 */
export function helpText(usage: string, specs: Record<string, FlagSpec>): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const placeholder = { choice: " <name>", string: " <path>", ints: " <n,n>", bool: "" };
    const arg = placeholder[s.kind as keyof typeof placeholder] ?? " <n>";
    const help = s.kind === "choice" ? `${s.help}: ${s.choices!.join(", ")}` : s.help;
    return [`  --${name}${arg}`, help];
  });
  const width = Math.max(...rows.map((r) => r[0].length));
  return [usage, "", ...rows.map(([a, b]) => `${a.padEnd(width)}  ${b}`)].join("\n");
}

/**
 * Runs an entrypoint: a {@link UserError} (or a permission error) becomes one line on stderr
 * and exit code 1, without a stack trace.
 *
 * @param main the entrypoint's body
 */
export async function runCli(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (e instanceof UserError) {
      console.error(`error: ${e.message}`);
      Deno.exit(1);
    }
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      console.error(`error: ${permissionHint((e as Error).message.split("\n")[0])}`);
      Deno.exit(1);
    }
    throw e;
  }
}

/**
 * Deno's message for a missing permission says "run again with the --allow-write flag", which
 * `deno task train` would take as a flag of its own: for the entry points of the tasks, the hint
 * names the `deno run` line instead.
 *
 * @param message Deno's first line, e.g. `Requires write access to "x", run again with the
 * --allow-write flag`
 * @param script the entry point that ran (default: this process's main module)
 * @returns the line to print
 */
export function permissionHint(
  message: string,
  script = Deno.mainModule.split("/").pop() ?? "",
): string {
  const m = message.match(
    /^Requires (\w+) access to "?([^",]+)"?, run again with the (--allow-\w+) flag/,
  );
  if (!m || !(script in TASK_PERMISSIONS)) return message;
  const [, kind, target, flag] = m;
  return permissionMessage(kind, target, script, flag);
}
