import { spawn, type ChildProcess } from "node:child_process";
import { readJsonLines, runNodeScript, type CommandResult, type LogLine } from "../support/child-output.js";

export type { LogLine };

/** The compiled CLI. */
export const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;

/** A `tokenbroker serve` child and its JSON log lines. */
export interface ServeProcess {
  readonly child: ChildProcess;
  /** From its "listening" log line, e.g. `http://127.0.0.2:41234`. */
  readonly url: string;
  /** Its log lines so far. */
  logs(): readonly LogLine[];
  /** Sends `signal` and waits for the exit (SIGKILL after 15 s). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `tokenbroker serve args…` with `env` alone, and waits for its "listening" line. */
export async function startServeProcess(args: string[], env: NodeJS.ProcessEnv): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, "serve", ...args], { env, stdio: ["ignore", "ignore", "pipe"] });
  const lines: LogLine[] = [];
  let stderr = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tokenbroker serve did not start within 15 s")), 15_000);
    readJsonLines(
      child.stderr!,
      (line) => {
        lines.push(line);
        if (line["event"] === "listening") {
          clearTimeout(timer);
          resolve(String(line["url"]));
        }
      },
      (chunk) => (stderr = (stderr + chunk).slice(-500)),
    );
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`tokenbroker serve exited (${child.exitCode ?? child.signalCode}) before listening: ${stderr}`));
    });
  });
  return {
    child,
    url,
    logs: () => lines,
    async stop(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs the CLI to completion with `input` on its standard input. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, input = ""): Promise<CommandResult> {
  return runNodeScript(CLI, args, env, input);
}
