import { deployedNodeOptions } from "./deployed-node-options.js";
import { forkHost, type Host } from "./ipc.js";
import type { LoadHostApi } from "./load/main.js";
import type { ServerHostApi } from "./server/main.js";

/** What every scenario gets from the runner. */
export interface BenchContext {
  /** `--quick`: tiny counts and short windows, to check that the bench works (figures not meaningful). */
  quick: boolean;
  /** The load-generator process, shared by the scenarios. */
  load: Host<LoadHostApi>;
  /** Prints a progress line (standard error). */
  progress(line: string): void;
}

/**
 * Forks a server process (with `--expose-gc`, for memory figures), with the
 * V8 flags of `deploy/tokenbroker.service` unless `nodeDefaults`.
 */
export function startServerHost(options: { nodeDefaults?: boolean } = {}): Promise<Host<ServerHostApi>> {
  const v8 = options.nodeDefaults ? [] : deployedNodeOptions();
  return forkHost<ServerHostApi>(new URL("./server/main.js", import.meta.url), { execArgv: ["--expose-gc", ...v8] });
}

/** Forks the load-generator process. */
export function startLoadHost(): Promise<Host<LoadHostApi>> {
  return forkHost<LoadHostApi>(new URL("./load/main.js", import.meta.url));
}

/** Server CPU utilisation between two `cpu()` readings, percent of one core. */
export function cpuPercent(a: { cpuUs: number; wallMs: number }, b: { cpuUs: number; wallMs: number }): number {
  return ((b.cpuUs - a.cpuUs) / 1000 / (b.wallMs - a.wallMs)) * 100;
}
