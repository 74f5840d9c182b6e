import { setMaxListeners } from "node:events";
import type { BenchSelector } from "./clients.js";
import { createRawGrpcClient, type RawGrpcClient } from "./raw-grpc-client.js";

/** Options for {@link openHostWatchers}. */
export interface HostWatchersOptions {
  /** One base URL per host. */
  urls: string[];
  /** WatchToken streams on each host, all on one HTTP/2 connection per host. */
  perHost: number;
  selector: BenchSelector;
  /** Give up waiting for a version after this long, ms. */
  timeoutMs: number;
}

/** WatchToken streams on several hosts, each arrival timed on the wall clock (comparable with the hosts' logs). */
export interface HostWatchers {
  /**
   * Waits until every stream has `version` (or a later one) and returns, per host, the wall-clock time (ms,
   * fractional) each of its streams received it.
   */
  arrivals(version: number): Promise<number[][]>;
  close(): void;
}

const wallNow = () => performance.timeOrigin + performance.now();

/** Opens the streams and waits for each one's first message. */
export async function openHostWatchers(options: HostWatchersOptions): Promise<HostWatchers> {
  const clients: RawGrpcClient[] = options.urls.map((url) => createRawGrpcClient(url));
  const abort = new AbortController();
  setMaxListeners(0, abort.signal);
  // Per host and stream: version → arrival.
  const seen = options.urls.map(() => Array.from({ length: options.perHost }, () => new Map<number, number>()));
  let failure: Error | undefined;
  for (const [host, client] of clients.entries()) {
    for (let stream = 0; stream < options.perHost; stream++) {
      const arrivals = seen[host]![stream]!;
      client
        .watchToken(
          options.selector,
          (m) => {
            const v = Number(m.token?.version ?? -1);
            if (!arrivals.has(v)) arrivals.set(v, wallNow());
          },
          abort.signal,
        )
        .then(
          () => {
            if (!abort.signal.aborted) failure ??= new Error(`a WatchToken stream of host ${host + 1} ended`);
          },
          (e: unknown) => {
            if (!abort.signal.aborted) failure ??= e instanceof Error ? e : new Error(String(e));
          },
        );
    }
  }
  /** The arrival of `version` or a later one on a stream (streams skip versions they were never sent). */
  const arrivalOf = (arrivals: Map<number, number>, version: number) => {
    let at: number | undefined;
    for (const [v, t] of arrivals) if (v >= version && (at === undefined || t < at)) at = t;
    return at;
  };
  const waitFor = async (ready: () => boolean, what: string) => {
    const deadline = performance.now() + options.timeoutMs;
    while (!ready()) {
      if (failure) throw failure;
      if (performance.now() > deadline) throw new Error(`not every WatchToken stream received ${what} within ${options.timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  };
  await waitFor(() => seen.every((host) => host.every((a) => a.size > 0)), "its first message");
  return {
    async arrivals(version) {
      await waitFor(() => seen.every((host) => host.every((a) => arrivalOf(a, version) !== undefined)), `version ${version}`);
      return seen.map((host) => host.map((a) => arrivalOf(a, version)!));
    },
    close() {
      abort.abort();
      for (const c of clients) c.close();
    },
  };
}
