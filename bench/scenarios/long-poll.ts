import { startServerHost, type BenchContext } from "../context.js";
import type { Host } from "../ipc.js";
import type { BenchSelector } from "../load/clients.js";
import type { ServerHostApi } from "../server/main.js";
import { round } from "../stats.js";

/** What the same number of WatchToken streams cost on the same server, in the same run. */
export interface LongPollStreamFigures {
  /** Server RSS growth per stream, bytes. */
  rssPerSubscriber: number;
  /** Server V8 heap + external memory growth per stream, bytes. */
  heapPerSubscriber: number;
  /** Delivery of one refresh to every stream, p99, ms. */
  p99Ms: number;
}

/** Scenario 6's figures. */
export interface LongPollFigures {
  /** Long polls waiting at once (and WatchToken streams, for comparison). */
  waiters: number;
  callsPerConnection: number;
  /** The long polls' `wait`, ms. */
  waitMs: number;
  /** From the first call sent to the last one held by the server (sent 1,000 at a time), ms. */
  sendMs: number;
  /** ReportExpired round trip, including the upstream refresh and the commit, ms. */
  refreshMs: number;
  /** Answers after the refresh, from the moment ReportExpired was sent, ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Calls answered with another version than the refresh's, or failed. */
  wrong: number;
  /** Calls to the fake Xero's token endpoint for the one refresh. */
  upstreamCalls: number;
  /** Server RSS growth per waiting call, bytes. */
  rssPerWaiter: number;
  /** Server V8 heap + external memory growth per waiting call, bytes. */
  heapPerWaiter: number;
  streams: LongPollStreamFigures;
}

/**
 * Scenario 6: GetToken long polls (`newer_than` the current version, `wait`
 * 60 s) over gRPC, 100 per HTTP/2 connection, waiting at once on one token
 * set; one refresh answers all of them. Memory is read in the server process
 * after full garbage collections, before and after the calls are sent, and
 * compared with the same number of WatchToken streams on the same server in
 * the same run (measured first): a long poll must cost no more than a stream.
 */
export async function benchLongPoll(ctx: BenchContext): Promise<LongPollFigures> {
  const waiters = ctx.quick ? 200 : 10_000;
  const perConnection = ctx.quick ? 50 : 100;
  const waitMs = 60_000;
  const host = await startServerHost();
  try {
    const broker = await host.call("startBroker", { clock: "system" });
    const selector: BenchSelector = { case: "tenantId", value: broker.tenantId };
    const watch = { url: broker.url, perConnection, selector, batch: 1000, timeoutMs: 60_000 };
    const polls = { url: broker.url, perConnection, selector, waitMs };

    // Warm both code paths (and the JIT) before the baselines.
    await ctx.load.call("openWatchers", { ...watch, count: 100 });
    await ctx.load.call("fanOutRound");
    await ctx.load.call("closeWatchers");
    await untilSubscribers(host, 0);
    await sendLongPolls(ctx, host, polls, 100);
    await ctx.load.call("answerLongPolls");
    await untilSubscribers(host, 0);

    // WatchToken streams: the budget.
    let base = await host.call("memory");
    await ctx.load.call("openWatchers", { ...watch, count: waiters });
    await untilSubscribers(host, waiters);
    let loaded = await host.call("memory");
    const fanOut = await ctx.load.call("fanOutRound");
    await ctx.load.call("closeWatchers");
    await untilSubscribers(host, 0);
    const streams: LongPollStreamFigures = {
      rssPerSubscriber: Math.round((loaded.rss - base.rss) / waiters),
      heapPerSubscriber: Math.round((loaded.heapUsed + loaded.external - base.heapUsed - base.external) / waiters),
      p99Ms: round(fanOut.p99, 1),
    };
    ctx.progress(`long poll: ${waiters} WatchToken streams for comparison, ${streams.heapPerSubscriber} B heap each`);

    // Long polls.
    base = await host.call("memory");
    const sendMs = await sendLongPolls(ctx, host, polls, waiters);
    loaded = await host.call("memory");
    const calls = await host.call("tokenEndpointCalls");
    const answered = await ctx.load.call("answerLongPolls");
    const upstreamCalls = (await host.call("tokenEndpointCalls")) - calls;
    await untilSubscribers(host, 0);
    ctx.progress(`long poll: ${waiters} waiting calls answered by one refresh, p99 ${round(answered.p99, 1)} ms`);
    return {
      waiters,
      callsPerConnection: perConnection,
      waitMs,
      sendMs: round(sendMs, 0),
      refreshMs: round(answered.refreshMs, 1),
      p50Ms: round(answered.p50, 1),
      p99Ms: round(answered.p99, 1),
      maxMs: round(answered.max, 1),
      wrong: answered.wrong,
      upstreamCalls,
      rssPerWaiter: Math.round((loaded.rss - base.rss) / waiters),
      heapPerWaiter: Math.round((loaded.heapUsed + loaded.external - base.heapUsed - base.external) / waiters),
      streams,
    };
  } finally {
    await host.stop();
  }
}

/** Sends `count` long polls, 1,000 at a time, each batch once the server holds the previous; returns the time taken, ms. */
async function sendLongPolls(
  ctx: BenchContext,
  host: Host<ServerHostApi>,
  options: { url: string; perConnection: number; selector: BenchSelector; waitMs: number },
  count: number,
): Promise<number> {
  const started = performance.now();
  await ctx.load.call("prepareLongPolls", options);
  for (let sent = 0; sent < count; ) {
    const n = Math.min(1000, count - sent);
    await ctx.load.call("sendLongPolls", n);
    sent += n;
    await untilSubscribers(host, sent);
  }
  return performance.now() - started;
}

/** Waits until the broker's hub holds `n` subscriptions (streams and waiting long polls alike). */
async function untilSubscribers(host: Host<ServerHostApi>, n: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await host.call("subscribers")) !== n) {
    if (Date.now() > deadline) throw new Error(`the server never had ${n} subscribers`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
