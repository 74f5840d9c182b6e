import { toJson } from "@bufbuild/protobuf";
import { TokenSchema } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startServerHost, type BenchContext } from "../context.js";
import { deployedNodeOptions } from "../deployed-node-options.js";
import { createGrpcClient, type BenchSelector } from "../load/clients.js";
import type { StormResult } from "../load/storm.js";
import { round } from "../stats.js";

/** Storms run before the measured ones (see `benchRefreshStorm`). */
const WARM_UP_STORMS = 3;

/** One storm: every caller asks at once, just after the token expired. */
export interface StormRound {
  /** Calls to the fake Xero's token endpoint during the storm (must be 1). */
  upstreamCalls: number;
  /** The refresh as the broker logged it: from its start to its commit, ms. */
  refreshMs: number;
  /** From the first request sent to the first answer, ms (the refresh itself takes at least the upstream latency). */
  firstServedMs: number;
  p50Ms: number;
  /** From the first request sent to the last answer, ms (target < upstream latency + 50). */
  lastServedMs: number;
  /** Distinct token versions handed out (must be one, the new one). */
  versions: number;
  errors: number;
  /** The same burst of callers against the bare server (constant token, no refresh): from the first request sent to the last answer, ms. */
  bareLastServedMs: number;
}

/** The rounds of one broker (and bare server) configuration. */
export interface StormSeries {
  /** The server processes' V8 flags: those of `deploy/tokenbroker.service`, or "" for Node's defaults. */
  nodeOptions: string;
  rounds: StormRound[];
  /** Worst round. */
  upstreamCalls: number;
  lastServedMs: number;
  bareLastServedMs: number;
}

/** Scenario 2's figures: the broker as deployed, and with Node's defaults. */
export interface StormFigures extends StormSeries {
  callers: number;
  connections: number;
  upstreamLatencyMs: number;
  nodeDefaults: StormSeries;
}

/**
 * Scenario 2: `callers` concurrent GetToken over gRPC (1,000 calls spread over
 * 10 HTTP/2 connections; 100 over 2 with `--quick`) the moment the stored token
 * has expired, with the fake Xero answering after 200 ms. The load process
 * sends them with a minimal gRPC client on `node:http2`
 * (`bench/load/raw-grpc-client.ts`): in production those callers are many
 * processes on several hosts, and in one process a client library's CPU per
 * call (about 500 µs for connect-node's) would alone exceed the 250 ms target,
 * so the storm would measure the client rather than the server. The broker
 * runs on a manual clock, so "the moment it expires" is exact; three storms to
 * warm up, then three measured. Each is followed by the same burst against the
 * bare server: what the transport alone takes to answer that many callers at
 * once. All of it twice: with the V8 flags of `deploy/tokenbroker.service`,
 * and with Node's defaults (a larger young generation holds the waiting calls
 * without promoting them).
 */
export async function benchRefreshStorm(ctx: BenchContext): Promise<StormFigures> {
  const callers = ctx.quick ? 100 : 1000;
  const connections = ctx.quick ? 2 : 10;
  const upstreamLatencyMs = 200;
  const shape = { callers, connections, upstreamLatencyMs };
  const deployed = await stormSeries(ctx, shape, false);
  const nodeDefaults = await stormSeries(ctx, shape, true);
  return { ...shape, ...deployed, nodeDefaults };
}

/** Scenario 2 on fresh server processes, with the deployed V8 flags or Node's defaults. */
async function stormSeries(
  ctx: BenchContext,
  { callers, connections, upstreamLatencyMs }: { callers: number; connections: number; upstreamLatencyMs: number },
  nodeDefaults: boolean,
): Promise<StormSeries> {
  const host = await startServerHost({ nodeDefaults });
  const bareHost = await startServerHost({ nodeDefaults });
  const nodeOptions = nodeDefaults ? "" : deployedNodeOptions().join(" ");
  try {
    const broker = await host.call("startBroker", { clock: "manual" });
    const selector: BenchSelector = { case: "tenantId", value: broker.tenantId };
    const { token } = await createGrpcClient(broker.url).getToken({ selector });
    if (!token) throw new Error("the broker returned no token");
    const bare = await bareHost.call("startBare", toJson(TokenSchema, token));
    await ctx.load.call("prepareStorm", "broker", { url: broker.url, callers, connections, selector });
    await ctx.load.call("prepareStorm", "bare", { url: bare.url, callers, connections, selector });
    await host.call("setUpstreamLatency", upstreamLatencyMs);
    // Storms unmeasured first, so that the measured ones run on warm code, as in a broker in service: the
    // first storm on a fresh process runs much of its path unoptimized and costs twice the CPU of the fourth.
    for (let i = 0; i < WARM_UP_STORMS; i++) {
      await host.call("expireToken");
      await ctx.load.call("fireStorm", "broker");
      await ctx.load.call("fireStorm", "bare");
    }
    await host.call("refreshDurations");

    const rounds: StormRound[] = [];
    for (let r = 0; r < 3; r++) {
      const before = await host.call("tokenEndpointCalls");
      await host.call("expireToken");
      const storm: StormResult = await ctx.load.call("fireStorm", "broker");
      const upstreamCalls = (await host.call("tokenEndpointCalls")) - before;
      const durations = await host.call("refreshDurations");
      const baseline = await ctx.load.call("fireStorm", "bare");
      rounds.push({
        upstreamCalls,
        refreshMs: durations.length > 0 ? Math.max(...durations) : NaN,
        firstServedMs: round(storm.firstServedMs, 1),
        p50Ms: round(storm.p50, 1),
        lastServedMs: round(storm.lastServedMs, 1),
        versions: storm.versions.length,
        errors: storm.errors + baseline.errors,
        bareLastServedMs: round(baseline.lastServedMs, 1),
      });
      ctx.progress(
        `refresh storm ${r + 1}${nodeDefaults ? " (Node's defaults)" : ""}: ${callers} callers, ${upstreamCalls} upstream call(s), ` +
          `last served after ${round(storm.lastServedMs, 1)} ms (bare server: ${round(baseline.lastServedMs, 1)} ms)`,
      );
    }
    return {
      nodeOptions,
      rounds,
      upstreamCalls: Math.max(...rounds.map((r) => r.upstreamCalls)),
      lastServedMs: Math.max(...rounds.map((r) => r.lastServedMs)),
      bareLastServedMs: Math.max(...rounds.map((r) => r.bareLastServedMs)),
    };
  } finally {
    await host.stop();
    await bareHost.stop();
  }
}
