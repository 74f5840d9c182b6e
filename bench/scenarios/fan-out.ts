import { setTimeout as delay } from "node:timers/promises";
import { toJson } from "@bufbuild/protobuf";
import { TokenSchema } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startServerHost, type BenchContext } from "../context.js";
import type { Host } from "../ipc.js";
import { createGrpcClient, type BenchSelector } from "../load/clients.js";
import type { ServerHostApi } from "../server/main.js";
import { round } from "../stats.js";

/** One refresh pushed to every subscriber. */
export interface FanOutRoundFigures {
  /** ReportExpired round trip, including the upstream refresh and the commit, ms. */
  refreshMs: number;
  /** Delivery to subscribers, from the moment ReportExpired was sent, ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** What one server did with the subscribers. */
export interface FanOutServerFigures {
  /** From opening the first stream to the first message on the last one, ms (opened 1,000 at a time). */
  openMs: number;
  rounds: FanOutRoundFigures[];
  /** Worst round's p99. */
  p99Ms: number;
  /** Server RSS growth per subscriber, bytes. */
  rssPerSubscriber: number;
  /** Server V8 heap + external memory growth per subscriber, bytes. */
  heapPerSubscriber: number;
}

/** Scenario 3's figures: the broker's, and the bare server's on the same stack. */
export interface FanOutFigures extends FanOutServerFigures {
  subscribers: number;
  streamsPerConnection: number;
  /** The same streams on the bare server: a constant token, pushed to every stream by ReportExpired. */
  bare: FanOutServerFigures;
}

/**
 * Scenario 3: WatchToken subscribers on one token set, as real gRPC streams
 * over HTTP/2 (100 per connection); a refresh is pushed to all of them, three
 * times. Memory is read in the server process after full garbage
 * collections, before and after the streams are opened. Then the same against
 * the bare server, whose WatchToken is a constant token and a wait: what the
 * transport alone costs per stream.
 */
export async function benchFanOut(ctx: BenchContext): Promise<FanOutFigures> {
  const subscribers = ctx.quick ? 200 : 10_000;
  const perConnection = ctx.quick ? 50 : 100;
  const host = await startServerHost();
  const bareHost = await startServerHost();
  try {
    const broker = await host.call("startBroker", { clock: "system" });
    const selector: BenchSelector = { case: "tenantId", value: broker.tenantId };
    const { token } = await createGrpcClient(broker.url).getToken({ selector });
    if (!token) throw new Error("the broker returned no token");
    const bare = await bareHost.call("startBare", toJson(TokenSchema, token));
    const options = { subscribers, perConnection, selector };
    const brokerFigures = await measure(ctx, "broker", host, broker.url, options);
    const bareFigures = await measure(ctx, "bare server", bareHost, bare.url, options);
    return { subscribers, streamsPerConnection: perConnection, ...brokerFigures, bare: bareFigures };
  } finally {
    await host.stop();
    await bareHost.stop();
  }
}

async function measure(
  ctx: BenchContext,
  name: string,
  host: Host<ServerHostApi>,
  url: string,
  options: { subscribers: number; perConnection: number; selector: BenchSelector },
): Promise<FanOutServerFigures> {
  const { subscribers } = options;
  const watch = { url, perConnection: options.perConnection, selector: options.selector, batch: 1000, timeoutMs: 60_000 };
  // Warm the code paths (and the JIT) before the baseline, then close everything again.
  await ctx.load.call("openWatchers", { ...watch, count: 100 });
  await ctx.load.call("fanOutRound");
  await ctx.load.call("closeWatchers");
  await untilSubscribers(host, 0);
  const base = await host.call("memory");

  const opened = await ctx.load.call("openWatchers", { ...watch, count: subscribers });
  await untilSubscribers(host, subscribers);
  const loaded = await host.call("memory");
  ctx.progress(`fan-out, ${name}: ${subscribers} streams open after ${Math.round(opened.openMs)} ms`);

  const rounds: FanOutRoundFigures[] = [];
  for (let r = 0; r < 3; r++) {
    const f = await ctx.load.call("fanOutRound");
    rounds.push({ refreshMs: round(f.refreshMs, 1), p50Ms: round(f.p50, 1), p99Ms: round(f.p99, 1), maxMs: round(f.max, 1) });
    ctx.progress(`fan-out, ${name}: token v${f.version} reached all ${subscribers} subscribers, p99 ${round(f.p99, 1)} ms`);
  }
  await ctx.load.call("closeWatchers");
  return {
    openMs: round(opened.openMs, 0),
    rounds,
    p99Ms: Math.max(...rounds.map((r) => r.p99Ms)),
    rssPerSubscriber: Math.round((loaded.rss - base.rss) / subscribers),
    heapPerSubscriber: Math.round((loaded.heapUsed + loaded.external - base.heapUsed - base.external) / subscribers),
  };
}

async function untilSubscribers(host: Host<ServerHostApi>, n: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await host.call("subscribers")) !== n) {
    if (Date.now() > deadline) throw new Error(`the server never had ${n} subscribers`);
    await delay(20);
  }
}
