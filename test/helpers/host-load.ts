import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { GetTokenResponse } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { HOST_ADDRESSES } from "./loopback-addresses.js";
import type { HostCluster } from "./host-cluster.js";
import { spawnLines } from "./line-process.js";

/** What a caller names: a connection or a tenant. */
export type Selector = { case: "connectionId"; value: string } | { case: "tenantId"; value: string };

/** Wall-clock time in ms with sub-millisecond precision: comparable with the hosts' log times (same machine). */
export const wallNow = (): number => performance.timeOrigin + performance.now();

/**
 * `callers` GetToken calls at once, spread over the hosts in turn (caller `i` on host `i % 3`), every other
 * one over Connect instead of gRPC; `selectors` are used in turn. Resolves with every answer, in order.
 * Each asks for a token that is merely unexpired (`min_valid_for` 0): the tests' tokens live 3 s, and on a
 * loaded machine the last of 1,000 calls can arrive past the new token's half-life, where the default
 * (60 s, capped at half the lifetime) would rightly refresh again, for a second expiry.
 */
export function storm(c: HostCluster, callers: number, selectors: readonly Selector[]): Promise<GetTokenResponse[]> {
  return Promise.all(
    Array.from({ length: callers }, (_, i) =>
      c
        .client(i % HOST_ADDRESSES.length, Math.floor(i / HOST_ADDRESSES.length) % 2 ? "connect" : "grpc")
        .getToken(
          { selector: selectors[i % selectors.length]!, minValidFor: { seconds: 0n, nanos: 0 } },
          { ...c.callOptions, timeoutMs: 20_000 },
        ),
    ),
  );
}

/** One WatchToken stream of one host, and when each version reached it. */
export interface Watcher {
  readonly host: number;
  /** Token version → wall-clock time it arrived (see {@link wallNow}). */
  readonly arrivals: ReadonlyMap<number, number>;
  /** Why the stream ended, if it did. */
  readonly error: string | undefined;
}

/** The WatchToken streams of {@link startWatchers}. */
export interface Watchers {
  readonly all: readonly Watcher[];
  /** Kills their process. */
  close(): void;
}

const WATCH_PROCESS = join(import.meta.dirname, "watch-process.mjs");

/**
 * Opens `perHost` WatchToken streams (gRPC) on every host, in a process of their own
 * (test/helpers/watch-process.mjs), so that their arrival times are not those of a test process busy with a
 * storm's callers; each arrival is timed there, on the same wall clock as the hosts' logs.
 */
export function startWatchers(c: HostCluster, perHost: number, selector: Selector): Watchers {
  const urls = HOST_ADDRESSES.map((address) => `http://${address}:${c.port}`);
  const apiKey = c.callOptions.headers.authorization.replace(/^Bearer /, "");
  const child = spawnLines(process.execPath, [WATCH_PROCESS, JSON.stringify({ urls, perHost, selector })], {
    env: { PATH: process.env["PATH"] ?? "", TOKENBROKER_TEST_API_KEY: apiKey },
  });
  const all = HOST_ADDRESSES.flatMap((_, host) =>
    Array.from({ length: perHost }, () => ({ host, arrivals: new Map<number, number>(), error: undefined as string | undefined })),
  );
  let read = 0;
  /** Takes the lines printed since the last look. */
  const update = () => {
    for (; read < child.lines.length; read++) {
      const line = child.lines[read] as { host: number; stream: number; version?: number; at?: number; error?: string };
      const w = all[line.host * perHost + line.stream];
      if (!w) continue;
      if (line.error !== undefined) w.error = line.error;
      else if (!w.arrivals.has(line.version!)) w.arrivals.set(line.version!, line.at!);
    }
  };
  return {
    get all() {
      update();
      return all;
    },
    close: () => child.kill(),
  };
}

/** Waits until every watcher has `version`; throws naming the stragglers (and a stream's error) after `timeoutMs`. */
export async function everyWatcherHas(ws: Watchers, version: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const watchers = ws.all;
    const missing = watchers.filter((w) => !w.arrivals.has(version));
    if (missing.length === 0) return;
    const failed = watchers.find((w) => w.error !== undefined);
    if (failed) throw new Error(`a watcher of host ${failed.host} failed: ${failed.error}`);
    if (performance.now() > deadline) {
      const hosts = [...new Set(missing.map((w) => w.host))].join(", ");
      throw new Error(`${missing.length} watchers (hosts ${hosts}) had no version ${version} after ${timeoutMs} ms`);
    }
    await delay(5);
  }
}

/** Polls the async `check` every `everyMs` until it holds; throws after `timeoutMs`. */
export async function eventuallyAsync(check: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 10): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(everyMs);
  }
}

/** The nearest-rank `q`-quantile (0..1) of `samples`. */
export function quantile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}
