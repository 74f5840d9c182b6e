import { cpuPercent } from "../context.js";
import type { Host } from "../ipc.js";
import type { ServerHostApi } from "../server/main.js";
import { round } from "../stats.js";
import { runH2load, type H2loadLoad, type H2loadRequest, type H2loadResult } from "./h2load.js";

/** What one server did in the windows of a comparison, all rounds pooled. */
export interface PairedSide {
  /** Requests answered per second (all rounds' requests over all rounds' windows). */
  rps: number;
  /** Mean time per request as h2load saw it, ms (h2load reports no percentiles). */
  meanMs: number;
  /** Server process CPU, percent of one core. */
  serverCpuPct: number;
  /** Server process CPU time per answered request, µs. */
  serverCpuUsPerRequest: number;
  requests: number;
  /** Requests not answered 2xx, or that failed on the wire. */
  errors: number;
  /** Response body bytes per request, as h2load counted them (the same answer on both sides). */
  dataBytesPerRequest: number;
}

/** One server of a comparison: the process whose CPU is read, and the request h2load repeats at it. */
export interface PairedServer {
  host: Host<ServerHostApi>;
  request: H2loadRequest;
}

/** One h2load window on one server, with that server's CPU time over it. */
interface Window {
  result: H2loadResult;
  cpuPct: number;
  cpuUs: number;
}

/** Both servers' windows, pooled, and the rounds' ratios of `a` to `b`. */
export interface PairedFigures {
  a: PairedSide;
  b: PairedSide;
  /** Per round, a's req/s ÷ b's req/s. */
  ratios: number[];
  /** Per round, b's CPU µs per call ÷ a's: the throughput ratio of two saturated servers, steadier on a busy machine. */
  cpuRatios: number[];
}

/**
 * Loads two servers in turn with h2load, `rounds` times, the order swapped
 * every round (a before b, then b before a) so that other work on the machine
 * falls on both alike; each window follows a short warm-up of the same server.
 */
export async function pairedRounds(
  a: PairedServer,
  b: PairedServer,
  options: { rounds: number; load: H2loadLoad; warmupS: number },
): Promise<PairedFigures> {
  const windows = { a: [] as Window[], b: [] as Window[] };
  const servers = { a, b };
  for (let r = 0; r < options.rounds; r++) {
    for (const which of r % 2 === 0 ? (["a", "b"] as const) : (["b", "a"] as const)) {
      const { host, request } = servers[which];
      await runH2load(request, { ...options.load, durationS: options.warmupS });
      const before = await host.call("cpu");
      const result = await runH2load(request, options.load);
      const after = await host.call("cpu");
      windows[which].push({ result, cpuPct: cpuPercent(before, after), cpuUs: after.cpuUs - before.cpuUs });
    }
  }
  const perCall = (w: Window) => w.cpuUs / Math.max(1, w.result.done);
  return {
    a: pool(windows.a),
    b: pool(windows.b),
    ratios: windows.a.map((w, i) => round(w.result.rps / windows.b[i]!.result.rps, 3)),
    cpuRatios: windows.a.map((w, i) => perCall(windows.b[i]!) / perCall(w)),
  };
}

/** Pools the windows of one server. */
function pool(windows: Window[]): PairedSide {
  const requests = windows.reduce((n, w) => n + w.result.done, 0);
  const seconds = windows.reduce((n, w) => n + w.result.done / w.result.rps, 0);
  return {
    rps: round(requests / seconds, 0),
    meanMs: round(windows.reduce((n, w) => n + w.result.meanMs * w.result.done, 0) / Math.max(1, requests), 3),
    serverCpuPct: round(windows.reduce((n, w) => n + w.cpuPct, 0) / windows.length, 0),
    serverCpuUsPerRequest: round(windows.reduce((n, w) => n + w.cpuUs, 0) / Math.max(1, requests), 0),
    requests,
    errors: windows.reduce((n, w) => n + w.result.failed, 0),
    dataBytesPerRequest: round(windows.reduce((n, w) => n + w.result.dataBytesPerRequest, 0) / windows.length, 0),
  };
}
