import { ConfigError } from "../config.js";
import type { CommandIo } from "./command.js";

/** Longest secret accepted on standard input. */
const MAX_SECRET_LENGTH = 16_384;

/**
 * Reads one secret (a client secret) from standard input, never from the command line, where other users could
 * see it. Piped in, the whole input is the secret (trimmed); typed at a terminal, it is read without echo up to
 * Enter. What it was called (`what`) is how errors name it; no error shows the value.
 */
export async function readSecret(io: CommandIo, what: string, example: string): Promise<string> {
  const input = io.in as CommandIo["in"] & { setRawMode?: (raw: boolean) => unknown };
  const text = input.isTTY && typeof input.setRawMode === "function" ? await readWithoutEcho(io, what) : await readAll(io, what);
  const secret = text.trim();
  if (secret === "") throw new ConfigError(`no ${what} on standard input: pipe it in, e.g. ${example}`);
  if (/\s/.test(secret)) throw new ConfigError(`standard input holds more than one word; give the ${what} alone`);
  return secret;
}

async function readAll(io: CommandIo, what: string): Promise<string> {
  let text = "";
  for await (const chunk of io.in) {
    text += typeof chunk === "string" ? chunk : (chunk as Buffer).toString("utf8");
    if (text.length > MAX_SECRET_LENGTH) throw new ConfigError(`standard input is too long for a ${what}`);
  }
  return text;
}

/** A line typed at the terminal, not echoed (raw mode); Ctrl-C or Ctrl-D on an empty line gives up. */
function readWithoutEcho(io: CommandIo, what: string): Promise<string> {
  const input = io.in as NodeJS.ReadStream;
  io.err.write(`${what[0]!.toUpperCase()}${what.slice(1)} (not shown), then Enter: `);
  input.setRawMode(true);
  input.resume();
  return new Promise<string>((resolve, reject) => {
    let text = "";
    const done = (error?: Error) => {
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
      io.err.write("\n");
      if (error) reject(error);
      else resolve(text);
    };
    const onData = (chunk: Buffer | string) => {
      for (const c of typeof chunk === "string" ? chunk : chunk.toString("utf8")) {
        if (c === "\r" || c === "\n") return done();
        if (c === "\u0003" || (c === "\u0004" && text === "")) return done(new ConfigError(`no ${what} given`));
        if (c === "\u007f" || c === "\b") text = text.slice(0, -1);
        else if (c >= " ") text += c;
        if (text.length > MAX_SECRET_LENGTH) return done(new ConfigError(`too long for a ${what}`));
      }
    };
    input.on("data", onData);
  });
}
