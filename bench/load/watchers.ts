import { setMaxListeners } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import { summarize, type LatencySummary } from "../stats.js";
import { createRawGrpcClient } from "./raw-grpc-client.js";
import { createGrpcClient, type BenchSelector } from "./clients.js";

/** Options for {@link openWatchers}. */
export interface WatchersOptions {
  url: string;
  /** WatchToken streams to open. */
  count: number;
  /** Streams per HTTP/2 connection. */
  perConnection: number;
  selector: BenchSelector;
  /** Streams opened at once; the next batch opens when these have their first message. */
  batch: number;
  /** Give up waiting for messages after this long, ms. */
  timeoutMs: number;
}

/** One refresh pushed to every stream. */
export interface FanOutRound extends LatencySummary {
  /** How long the ReportExpired call that caused the refresh took, ms. */
  refreshMs: number;
  /** The version pushed. */
  version: number;
}

/** Open WatchToken streams, and what it took to open them. */
export interface Watchers {
  readonly count: number;
  /** From the first stream opened to the first message on the last one, ms. */
  readonly openMs: number;
  /**
   * Refreshes the token set (ReportExpired of the current token) and waits
   * until every stream has the new token. Latency per stream is from the
   * moment ReportExpired is sent to that stream's message.
   */
  round(): Promise<FanOutRound>;
  /** Cancels every stream. */
  close(): void;
}

/** Opens `count` WatchToken streams over gRPC, `perConnection` per HTTP/2 connection, and waits for each one's first message. */
export async function openWatchers(options: WatchersOptions): Promise<Watchers> {
  const { count } = options;
  const connections = Math.ceil(count / options.perConnection);
  // The streams use the minimal node:http2 client: 10,000 subscribers are many channel processes in production,
  // and one load process reading 10,000 streams through a client library would measure the library.
  const clients = Array.from({ length: connections }, () => createRawGrpcClient(options.url));
  // ReportExpired on a connection of its own, not queued behind a hundred streams' frames.
  const reporter = createGrpcClient(options.url);
  const abort = new AbortController();
  setMaxListeners(0, abort.signal);
  const versions = new Float64Array(count).fill(-1);
  const receivedAt = new Float64Array(count);
  let latestToken = "";
  let latestVersion = -1;
  let target = 0;
  let reached = 0;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;

  const watch = async (i: number) => {
    const client = clients[Math.floor(i / options.perConnection)]!;
    try {
      await client.watchToken(
        options.selector,
        (m) => {
          const v = Number(m.token?.version ?? -1);
          versions[i] = v;
          receivedAt[i] = performance.now();
          if (v > latestVersion && m.token) {
            latestVersion = v;
            latestToken = m.token.accessToken;
          }
          if (v >= target && ++reached === count) wake?.();
        },
        abort.signal,
      );
      if (!abort.signal.aborted) failure ??= new Error(`WatchToken stream ${i} ended`);
    } catch (e) {
      if (!abort.signal.aborted) failure ??= e instanceof Error ? e : new Error(String(e));
    }
    if (failure) wake?.();
  };

  /** Waits until `n` streams hold `target`. */
  const untilReached = async (n: number) => {
    const deadline = performance.now() + options.timeoutMs;
    while (reached < n && !failure && performance.now() < deadline) await delay(5);
  };

  /** Waits until every stream holds `target` (set before anything is sent). */
  const everyStream = async (what: string) => {
    if (reached < count && !failure) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.timeoutMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    if (failure) throw failure;
    if (reached < count) throw new Error(`${count - reached} of ${count} streams did not receive ${what} within ${options.timeoutMs} ms`);
  };

  // Opened in batches, each waiting for its first messages: as a fleet of channels connects over time, not in one burst.
  const started = performance.now();
  for (let opened = 0; opened < count; ) {
    const batch = Math.min(count, opened + options.batch);
    for (; opened < batch; opened++) void watch(opened);
    await untilReached(batch);
  }
  await everyStream("their first message");
  const openMs = receivedAt.reduce((a, b) => Math.max(a, b), 0) - started;

  return {
    count,
    openMs,
    async round() {
      target = latestVersion + 1;
      reached = 0;
      for (const v of versions) if (v >= target) reached++;
      const t0 = performance.now();
      const res = await reporter.reportExpired({ selector: options.selector, accessToken: latestToken });
      const refreshMs = performance.now() - t0;
      if (!res.refreshed || Number(res.token?.version) !== target) {
        throw new Error(`ReportExpired did not refresh to version ${target}`);
      }
      await everyStream(`version ${target}`);
      const latencies = Array.from(receivedAt, (at) => at - t0);
      return { ...summarize(latencies), refreshMs, version: target };
    },
    close() {
      abort.abort();
      for (const client of clients) client.close();
    },
  };
}
