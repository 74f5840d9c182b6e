import { toJson } from "@bufbuild/protobuf";
import { TokenSchema } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { cpuPercent, startServerHost, type BenchContext } from "../context.js";
import type { Host } from "../ipc.js";
import { createGrpcClient, PROTOCOL_LABELS, type BenchSelector, type ProtocolName } from "../load/clients.js";
import type { ServerHostApi } from "../server/main.js";
import { median, round, summarize } from "../stats.js";

/** Throughput and latency of one server at one load. */
export interface LoadFigures {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Server process CPU, percent of one core: near 100 means the server was the bottleneck. */
  serverCpuPct: number;
  /** Server process CPU time per answered request, µs: the cost of one GetToken, whatever the load generator managed. */
  serverCpuUsPerRequest: number;
  requests: number;
  errors: number;
}

/** One row of the cached-GetToken table. */
export interface CachedRow {
  protocol: ProtocolName;
  label: string;
  concurrency: number;
  broker: LoadFigures;
  bare: LoadFigures;
  /** broker req/s ÷ bare req/s (target ≥ 0.85). */
  ratio: number;
}

const PROTOCOLS: ProtocolName[] = ["grpc-js", "connect-binary-h2", "connect-json-h1"];
const CONCURRENCY = [1, 16, 256];

/**
 * Scenario 1: cached GetToken through the broker versus a bare server on the
 * same stack, per protocol and concurrency. Each row alternates broker and
 * bare runs (five rounds each, the order swapped every round) so that noise
 * from other work on the machine falls on both alike; the ratio is the median
 * of the five rounds' broker ÷ bare ratios, so that one window disturbed by
 * other work does not decide it. Rates and latencies pool all rounds.
 */
export async function benchCachedGetToken(ctx: BenchContext): Promise<CachedRow[]> {
  const brokerHost = await startServerHost();
  const bareHost = await startServerHost();
  try {
    const broker = await brokerHost.call("startBroker", { clock: "system" });
    // The bare server returns the very token the broker hands out: same bytes on the wire.
    const selector: BenchSelector = { case: "tenantId", value: broker.tenantId };
    const { token } = await createGrpcClient(broker.url).getToken({ selector });
    if (!token) throw new Error("the broker returned no token");
    const bare = await bareHost.call("startBare", toJson(TokenSchema, token));

    const rounds = ctx.quick ? 1 : 5;
    const windowMs = ctx.quick ? 150 : 1500;
    const warmupMs = ctx.quick ? 50 : 300;
    const rows: CachedRow[] = [];
    for (const protocol of PROTOCOLS) {
      for (const concurrency of CONCURRENCY) {
        const runs = { broker: [] as Run[], bare: [] as Run[] };
        for (let r = 0; r < rounds; r++) {
          const order = r % 2 === 0 ? (["broker", "bare"] as const) : (["bare", "broker"] as const);
          for (const which of order) {
            const host = which === "broker" ? brokerHost : bareHost;
            const url = which === "broker" ? broker.url : bare.url;
            runs[which].push(await measure(ctx, host, url, protocol, { concurrency, durationMs: windowMs, warmupMs, selectors: [selector] }));
          }
        }
        const row: CachedRow = {
          protocol,
          label: PROTOCOL_LABELS[protocol],
          concurrency,
          broker: combine(runs.broker),
          bare: combine(runs.bare),
          ratio: 0,
        };
        row.ratio = round(median(runs.broker.map((b, i) => rate(b) / rate(runs.bare[i]!))), 3);
        ctx.progress(
          `cached GetToken ${row.label} ×${concurrency}: broker ${Math.round(row.broker.rps)}/s, bare ${Math.round(row.bare.rps)}/s, ratio ${row.ratio}`,
        );
        rows.push(row);
      }
    }
    return rows;
  } finally {
    await brokerHost.stop();
    await bareHost.stop();
  }
}

interface Run {
  samples: Float64Array;
  durationMs: number;
  errors: number;
  cpuPct: number;
  cpuUs: number;
}

async function measure(
  ctx: BenchContext,
  host: Host<ServerHostApi>,
  url: string,
  protocol: ProtocolName,
  options: { concurrency: number; durationMs: number; warmupMs: number; selectors: BenchSelector[] },
): Promise<Run> {
  // The warm-up is its own call, so that the CPU reading covers the measured window only.
  await ctx.load.call("getTokenLoad", url, protocol, { ...options, durationMs: options.warmupMs, warmupMs: 0 });
  const before = await host.call("cpu");
  const result = await ctx.load.call("getTokenLoad", url, protocol, { ...options, warmupMs: 0 });
  const after = await host.call("cpu");
  return { ...result, cpuPct: cpuPercent(before, after), cpuUs: after.cpuUs - before.cpuUs };
}

/** Answers per second of one run. */
function rate(run: Run): number {
  return (run.samples.length / run.durationMs) * 1000;
}

/** Pools the samples of several runs into one set of figures. */
function combine(runs: Run[]): LoadFigures {
  const all = new Float64Array(runs.reduce((n, r) => n + r.samples.length, 0));
  let at = 0;
  for (const r of runs) {
    all.set(r.samples, at);
    at += r.samples.length;
  }
  const ms = runs.reduce((n, r) => n + r.durationMs, 0);
  const s = summarize(all);
  return {
    rps: round((all.length / ms) * 1000, 0),
    p50Ms: round(s.p50, 3),
    p99Ms: round(s.p99, 3),
    serverCpuPct: round(runs.reduce((n, r) => n + r.cpuPct * r.durationMs, 0) / ms, 0),
    serverCpuUsPerRequest: round(runs.reduce((n, r) => n + r.cpuUs, 0) / all.length, 0),
    requests: all.length,
    errors: runs.reduce((n, r) => n + r.errors, 0),
  };
}
