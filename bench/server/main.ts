/**
 * The server side of the bench, in a process of its own (forked by the
 * runner with `--expose-gc`): a broker or a bare server, plus the figures
 * only this process can read (CPU time, memory, upstream calls, subscribers).
 */
import { writeHeapSnapshot } from "node:v8";
import type { JsonValue } from "@bufbuild/protobuf";
import { serveHost } from "../ipc.js";
import { startBareServer, type BareServer } from "./bare-host.js";
import { startPlainServers, type PlainServers, type PlainServerUrls } from "./plain-host.js";
import { startBenchBroker, type BenchBroker, type BenchBrokerOptions } from "./broker-host.js";
import type { GuardCounts } from "../../src/server/connection-guard.js";

let broker: BenchBroker | undefined;
let bare: BareServer | undefined;
let plain: PlainServers | undefined;
let rssSampler: NodeJS.Timeout | undefined;
let peakRss = 0;

function theBroker(): BenchBroker {
  if (!broker) throw new Error("no broker started in this host");
  return broker;
}

/** What the runner can ask of the server process. */
export const serverHostApi = {
  /** Starts the broker; resolves with where it listens and what it holds. */
  async startBroker(
    options: BenchBrokerOptions,
  ): Promise<{ url: string; tenantId: string; connectionId: string; apiKey: string | undefined }> {
    broker = await startBenchBroker(options);
    return { url: broker.url, tenantId: broker.tenantId, connectionId: broker.connectionId, apiKey: broker.apiKey };
  },
  /** Starts sampling resident memory every 20 ms (see `peakRss`). */
  startRssSampling(): void {
    clearInterval(rssSampler);
    peakRss = process.memoryUsage.rss();
    rssSampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
  },
  /** The highest resident memory sampled since `startRssSampling`, and now, bytes. */
  rss(): { peak: number; now: number } {
    const now = process.memoryUsage.rss();
    return { peak: Math.max(peakRss, now), now };
  },
  /** What the broker's connection limits refused or closed so far. */
  limitCounts(): GuardCounts {
    return { ...theBroker().server.limitCounts };
  },
  /** Starts the bare baseline server returning `token` (proto JSON). */
  async startBare(token: JsonValue): Promise<{ url: string }> {
    bare = await startBareServer(token);
    return { url: bare.url };
  },
  /** Starts the plain servers (grpc-js, connect-node on HTTP/2 and HTTP/1.1) answering GetToken with `token` (proto JSON). */
  async startPlain(token: JsonValue): Promise<PlainServerUrls> {
    plain = await startPlainServers(token);
    return plain.urls;
  },
  /** Moves the broker's (manual) clock past the token's expiry. */
  async expireToken(): Promise<void> {
    await theBroker().expireToken();
  },
  /** Delay of the fake Xero's token endpoint, ms. */
  async setUpstreamLatency(ms: number): Promise<void> {
    await theBroker().upstream.call("setLatency", ms);
  },
  /** Calls to the fake Xero's token endpoint so far. */
  tokenEndpointCalls(): Promise<number> {
    return theBroker().upstream.call("tokenEndpointCalls");
  },
  /** Durations of the refreshes since the last call, as the broker logged them, ms. */
  refreshDurations(): number[] {
    return theBroker().takeRefreshDurations();
  },
  /** Open WatchToken subscriptions (of the broker, or streams of the bare server). */
  subscribers(): number {
    if (bare) return bare.watchers;
    return theBroker().server.broker.hub.size;
  },
  /** CPU time used so far (µs) and the wall clock (ms), to compute utilisation. */
  cpu(): { cpuUs: number; wallMs: number } {
    const u = process.cpuUsage();
    return { cpuUs: u.user + u.system, wallMs: performance.now() };
  },
  /** `process.memoryUsage()` after two full garbage collections. */
  async memory(): Promise<NodeJS.MemoryUsage> {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error("start the server host with --expose-gc");
    for (let i = 0; i < 2; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    return process.memoryUsage();
  },
  /** Writes a V8 heap snapshot (a diagnostic: what does a subscriber hold?); returns its path. */
  heapSnapshot(path: string): string {
    return writeHeapSnapshot(path);
  },
};

/** The server host's API, for typed calls from the runner. */
export type ServerHostApi = typeof serverHostApi;

serveHost(serverHostApi, async () => {
  clearInterval(rssSampler);
  await broker?.close();
  await bare?.close();
  await plain?.close();
});
