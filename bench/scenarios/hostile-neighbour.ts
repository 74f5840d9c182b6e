import { setTimeout as delay } from "node:timers/promises";
import { startServerHost, type BenchContext } from "../context.js";
import { forkHost } from "../ipc.js";
import type { FloodHostApi, FloodOutcome } from "../load/flood.js";
import type { ClosedLoopResult } from "../load/closed-loop.js";
import type { GuardCounts } from "../../src/server/connection-guard.js";
import { round, summarize } from "../stats.js";

/** The authenticated callers' cached GetToken, in one window. */
export interface CallerFigures {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
}

/** Scenario 5's figures. */
export interface HostileFigures {
  callers: number;
  /** The callers alone, before the flood. */
  quiet: CallerFigures;
  /** The callers while the flood runs (target p99 < 20 ms). */
  underFlood: CallerFigures;
  /** Server resident memory before the flood, and its peak from the flood's start to the end of the window, MB (target < 250). */
  rssBeforeMb: number;
  peakRssMb: number;
  /** What the flood client saw become of its streams and sockets, at the end. */
  flood: FloodOutcome;
  /** What the server's limits counted. */
  server: GuardCounts;
  /** Seconds from the flood's start to the outcome read: once all of it was refused or closed, or at 30 s. */
  observedS: number;
}

const CALLERS = 16;

/**
 * Scenario 5, the hostile neighbour: a broker as `tokenbroker serve` runs it
 * (API keys, audit log, default limits) serves 16 authenticated gRPC callers
 * their cached token while one client without a key, from another address,
 * opens 10,000 HTTP/2 streams with unfinished 64 KB bodies (10 connections)
 * and 1,000 sockets that send half a request's headers and then a byte a
 * second. Measured: the callers' latency before and during the flood, the
 * server's peak RSS, and what became of the flood.
 */
export async function benchHostileNeighbour(ctx: BenchContext): Promise<HostileFigures> {
  const server = await startServerHost();
  const floodHost = await forkHost<FloodHostApi>(new URL("../load/flood.js", import.meta.url));
  try {
    const broker = await server.call("startBroker", { clock: "system", auth: true });
    if (!broker.apiKey) throw new Error("the bench broker made no API key");
    const headers = { authorization: `Bearer ${broker.apiKey}` };
    const selectors = [{ case: "tenantId" as const, value: broker.tenantId }];
    const windowMs = ctx.quick ? 500 : 10_000;
    const load = (durationMs: number, warmupMs: number) =>
      ctx.load.call("getTokenLoad", broker.url, "grpc-js", { concurrency: CALLERS, durationMs, warmupMs, selectors }, headers);
    const quiet = figures(await load(ctx.quick ? 300 : 3000, ctx.quick ? 100 : 500));
    ctx.progress(`hostile neighbour: ${CALLERS} callers alone: p99 ${quiet.p99Ms} ms`);
    const rssBefore = await server.call("rss");
    await server.call("startRssSampling");

    const started = performance.now();
    const flooding = floodHost.call("start", {
      url: broker.url,
      streams: ctx.quick ? 200 : 10_000,
      connections: ctx.quick ? 2 : 10,
      bodyBytes: 64 * 1024,
      slowSockets: ctx.quick ? 20 : 1000,
    });
    const underFlood = figures(await load(windowMs, 0));
    await flooding;
    // Until every stream and slow socket is refused or closed (the header timeout is 10 s), or 30 s.
    const observeMs = ctx.quick ? 1000 : 30_000;
    let flood = await floodHost.call("outcome");
    while (performance.now() - started < observeMs && (flood.open > 0 || flood.socketsClosed < flood.slowSockets)) {
      await delay(250);
      flood = await floodHost.call("outcome");
    }
    const observedS = round((performance.now() - started) / 1000, 1);
    const rss = await server.call("rss");
    const counts = await server.call("limitCounts");
    ctx.progress(
      `hostile neighbour: under flood p99 ${underFlood.p99Ms} ms, peak RSS ${mb(rss.peak)} MB; ` +
        `streams: ${flood.unauthenticated} UNAUTHENTICATED, resets ${JSON.stringify(flood.reset)}, ${flood.open} open; ` +
        `slow sockets closed ${flood.socketsClosed}/${flood.slowSockets}`,
    );
    return {
      callers: CALLERS,
      quiet,
      underFlood,
      rssBeforeMb: mb(rssBefore.now),
      peakRssMb: mb(rss.peak),
      flood,
      server: counts,
      observedS,
    };
  } finally {
    await floodHost.stop();
    await server.stop();
  }
}

function figures(r: ClosedLoopResult): CallerFigures {
  const s = summarize(r.samples);
  return {
    rps: round((r.samples.length / r.durationMs) * 1000, 0),
    p50Ms: round(s.p50, 3),
    p99Ms: round(s.p99, 3),
    maxMs: round(s.max, 3),
    errors: r.errors,
  };
}

function mb(bytes: number): number {
  return round(bytes / 1024 / 1024, 0);
}
