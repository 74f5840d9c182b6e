import { spawn } from "node:child_process";
import type { Readable } from "node:stream";

/** One JSON log line of a broker process. */
export type LogLine = Record<string, unknown>;

/**
 * Reads a child's log stream: `onText` gets every chunk as it comes, `onLine`
 * every complete line that parses as JSON (other lines are skipped). Used by
 * the bench's and the tests' serve processes alike.
 */
export function readJsonLines(stream: Readable, onLine: (line: LogLine) => void, onText: (chunk: string) => void = () => {}): void {
  let partial = "";
  stream.setEncoding("utf8").on("data", (chunk: string) => {
    onText(chunk);
    partial += chunk;
    const complete = partial.split("\n");
    partial = complete.pop()!;
    for (const text of complete) {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        continue;
      }
      onLine(line);
    }
  });
}

/** What a command that ran to completion printed, and how it ended. */
export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node script args…` to completion with `env` alone and `input` on its
 * standard input; SIGKILLed after `timeoutMs` (default 20 s).
 */
export async function runNodeScript(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input = "",
  timeoutMs = 20_000,
): Promise<CommandResult> {
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  child.stdin.on("error", () => {}); // it may exit before reading
  child.stdin.end(input);
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}
