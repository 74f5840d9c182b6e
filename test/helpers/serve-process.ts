import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { FakeXero } from "@tokenbroker/fake-xero";
import { fakeXeroEnv } from "../../bench/support/fake-xero-env.js";
import { readJsonLines, runNodeScript, type CommandResult, type LogLine } from "../../bench/support/child-output.js";

// `npm test` compiles src to dist/ before vitest runs; run `npm run build` first when running a file alone.
/** The compiled CLI. */
export const CLI = join(import.meta.dirname, "..", "..", "dist", "src", "cli", "main.js");

/** The test-only serve entry with refresh pauses (TOKENBROKER_TEST_PAUSE_*); not shipped. */
export const SERVE_WITH_FAULT_HOOKS = join(import.meta.dirname, "serve-with-fault-hooks.mjs");

export type { LogLine };

/** A `tokenbroker serve` child process. */
export interface ServeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** e.g. `http://127.0.0.1:41234`, from its "listening" log line. */
  readonly url: string;
  /** Everything it wrote to standard error so far. */
  stderr(): string;
  /** Its JSON log lines so far. */
  logs(): LogLine[];
  /** Resolves with the first log line (past or future) that matches. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends the signal at once (before returning) and resolves when the process has exited. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

const running = new Set<ServeProcess>();

/** The environment of a CLI child talking to `fake`, and nothing of the developer's TOKENBROKER_* settings. */
export function fakeEnv(fake: FakeXero, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return fakeXeroEnv(fake, extra);
}

/** A loopback port that was free a moment ago (for a process that must be told its port before it starts). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * The security flags of these tests' brokers: no API keys (loopback only) and tokens in clear text, so that a
 * test can compare what a broker serves with what its database holds. Security has tests of its own.
 */
export const INSECURE_SERVE_ARGS = ["--insecure-no-auth", "--insecure-no-encryption"];

/**
 * Starts `tokenbroker serve` on a free loopback port and waits until it listens.
 * `secure: true` leaves out {@link INSECURE_SERVE_ARGS} (API keys required; `args` must give the encryption key).
 * `faultHooks: true` runs it through {@link SERVE_WITH_FAULT_HOOKS}, which pauses as TOKENBROKER_TEST_PAUSE_* say.
 * `listen` is the address to bind (default `127.0.0.1:0`, a free port).
 */
export async function startServe(options: {
  env: NodeJS.ProcessEnv;
  db: string;
  listen?: string;
  args?: string[];
  secure?: boolean;
  faultHooks?: boolean;
}): Promise<ServeProcess> {
  const insecure = options.secure ? [] : INSECURE_SERVE_ARGS;
  const args = ["--listen", options.listen ?? "127.0.0.1:0", "--db", options.db, ...insecure, ...(options.args ?? [])];
  const entry = options.faultHooks ? [SERVE_WITH_FAULT_HOOKS] : [CLI, "serve"];
  const child = spawn(process.execPath, [...entry, ...args], {
    env: options.env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  const lines: LogLine[] = [];
  const waiters = new Set<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  readJsonLines(
    child.stderr!,
    (line) => {
      lines.push(line);
      for (const w of waiters) {
        if (w.match(line)) {
          waiters.delete(w);
          w.resolve(line);
        }
      }
    },
    (chunk) => (stderr += chunk),
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  const waitForLog = (match: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> => {
    const past = lines.find(match);
    if (past) return Promise.resolve(past);
    return new Promise<LogLine>((resolve, reject) => {
      const waiter = { match, resolve };
      waiters.add(waiter);
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`no such log line within ${timeoutMs} ms; stderr:\n${stderr.slice(-3000)}`));
      }, timeoutMs);
      timer.unref();
      void exited.then(() => {
        if (waiters.delete(waiter)) reject(new Error(`serve exited; stderr:\n${stderr.slice(-3000)}`));
      });
    });
  };
  let url = "";
  const proc: ServeProcess = {
    child,
    pid: child.pid!,
    get url() {
      return url;
    },
    stderr: () => stderr,
    logs: () => lines,
    waitForLog,
    exited,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
      running.delete(proc);
    },
  };
  running.add(proc);
  const listening = await waitForLog((l) => l["event"] === "listening");
  url = String(listening["url"]);
  return proc;
}

/** SIGKILLs every serve process still running (for afterEach). */
export async function killAllServe(): Promise<void> {
  await Promise.all([...running].map((p) => p.kill("SIGKILL")));
}

/** Runs the CLI to completion; `input` goes to its standard input. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, input = ""): Promise<CommandResult> {
  return runNodeScript(CLI, args, env, input);
}

/** Runs `tokenbroker import` with the refresh token on stdin; resolves with the connection id. */
export async function cliImport(env: NodeJS.ProcessEnv, db: string, refreshToken: string): Promise<string> {
  const r = await runCli(["import", "--db", db, "--insecure-no-encryption"], env, `${refreshToken}\n`);
  const id = /^connection (\S+) \(new\)$/m.exec(r.stdout)?.[1];
  if (r.code !== 0 || !id) throw new Error(`import failed (${r.code}): ${r.stderr}`);
  return id;
}

/** Polls `check` every `everyMs` until it returns true; throws after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs: number, what = "condition", everyMs = 2): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(everyMs);
  }
}
