import { spawn } from "node:child_process";

/** A child process whose standard output is read as JSON lines while it runs. */
export interface LineProcess {
  /** Every JSON line received so far, in order. */
  readonly lines: readonly Record<string, unknown>[];
  /** Standard error so far (for failure messages). */
  readonly stderr: string;
  /** The first line (not yet taken) whose `step` is `step`; rejects on timeout or exit first. */
  waitFor(step: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Waits for the exit; resolves with the exit code (null if killed by a signal). */
  exit(timeoutMs?: number): Promise<number | null>;
  /** Kills the process if it is still running. */
  kill(): void;
}

/** Options for {@link spawnLines}. */
export interface SpawnLinesOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts `command args…` and parses each line it prints as JSON (lines that
 * are not JSON are kept as `{ text }`).
 */
export function spawnLines(command: string, args: string[], options: SpawnLinesOptions = {}): LineProcess {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: Record<string, unknown>[] = [];
  const taken = new Set<number>();
  let stderr = "";
  let pending = "";
  let exitCode: number | null | undefined;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };

  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    pending += chunk;
    for (let at = pending.indexOf("\n"); at >= 0; at = pending.indexOf("\n")) {
      const line = pending.slice(0, at).trim();
      pending = pending.slice(at + 1);
      if (line === "") continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ text: line });
      }
    }
    wake();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  child.on("close", (code) => {
    exitCode = code;
    wake();
  });
  child.on("error", (e) => {
    stderr += String(e);
    exitCode = null;
    wake();
  });

  /** Resolves when `check` returns a value; rejects after `timeoutMs` with `what`. */
  function waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        let value: T | undefined;
        try {
          value = check();
        } catch (e) {
          done();
          reject(e instanceof Error ? e : new Error(String(e)));
          return;
        }
        if (value === undefined) return;
        done();
        resolve(value);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${what()}\nlines: ${JSON.stringify(lines)}\nstderr: ${stderr}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(listener);
      };
      const listener = () => attempt();
      waiters.add(listener);
      attempt();
    });
  }

  return {
    lines,
    get stderr() {
      return stderr;
    },
    waitFor(step, timeoutMs = 10_000) {
      return waitUntil(
        () => {
          const i = lines.findIndex((l, n) => !taken.has(n) && l["step"] === step);
          if (i >= 0) {
            taken.add(i);
            return lines[i];
          }
          if (exitCode !== undefined) throw new Error(`exited (${exitCode}) before step ${step}: ${stderr}`);
          return undefined;
        },
        timeoutMs,
        () => `no step ${step} within ${timeoutMs} ms`,
      );
    },
    exit(timeoutMs = 10_000) {
      return waitUntil(
        () => (exitCode === undefined ? undefined : { code: exitCode }),
        timeoutMs,
        () => `still running after ${timeoutMs} ms`,
      ).then((r) => r.code);
    },
    kill() {
      if (exitCode === undefined) child.kill("SIGKILL");
    },
  };
}
