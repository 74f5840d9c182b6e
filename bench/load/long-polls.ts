import { summarize, type LatencySummary } from "../stats.js";
import { createRawGrpcClient } from "./raw-grpc-client.js";
import { createGrpcClient, type BenchSelector } from "./clients.js";

/** Options for {@link prepareLongPolls}. */
export interface LongPollsOptions {
  url: string;
  /** Calls per HTTP/2 connection. */
  perConnection: number;
  selector: BenchSelector;
  /** The long polls' `wait`, ms (at most 60,000). */
  waitMs: number;
}

/** Long polls sent in batches and answered by one refresh. */
export interface LongPolls {
  /** Sends `n` more long polls (the runner waits until the server holds them before the next batch). */
  send(n: number): void;
  /**
   * Refreshes the token set (ReportExpired of the current token) and waits
   * until every call is answered. Latency per call is from the moment
   * ReportExpired is sent to its answer.
   */
  answer(): Promise<LongPollRound>;
}

/** One refresh answering every waiting call. */
export interface LongPollRound extends LatencySummary {
  /** How long the ReportExpired call that caused the refresh took, ms. */
  refreshMs: number;
  /** The version answered. */
  version: number;
  /** Calls answered with another version, or failed. */
  wrong: number;
}

/**
 * GetToken long polls over gRPC (`newer_than` the current version),
 * `perConnection` per HTTP/2 connection, on the minimal `node:http2` client,
 * as the fan-out's streams are.
 */
export async function prepareLongPolls(options: LongPollsOptions): Promise<LongPolls> {
  const reporter = createGrpcClient(options.url);
  const { token } = await reporter.getToken({ selector: options.selector });
  if (!token) throw new Error("the broker returned no token");
  const version = Number(token.version);
  const clients: Array<ReturnType<typeof createRawGrpcClient>> = [];
  const answeredAt: number[] = [];
  const versions: number[] = [];
  const calls: Array<Promise<void>> = [];
  return {
    send(n) {
      for (let k = 0; k < n; k++) {
        const i = calls.length;
        if (i % options.perConnection === 0) clients.push(createRawGrpcClient(options.url));
        versions[i] = -1;
        calls.push(
          clients
            .at(-1)!
            .longPoll(options.selector, version, options.waitMs)
            .then(
              (r) => {
                answeredAt[i] = performance.now();
                versions[i] = Number(r.token?.version ?? -1);
              },
              () => {
                answeredAt[i] = performance.now();
              },
            ),
        );
      }
    },
    async answer() {
      const t0 = performance.now();
      const res = await reporter.reportExpired({ selector: options.selector, accessToken: token.accessToken });
      const refreshMs = performance.now() - t0;
      await Promise.all(calls);
      for (const client of clients) client.close();
      if (!res.refreshed) throw new Error("ReportExpired did not refresh");
      const wrong = versions.filter((v) => v !== version + 1).length;
      return { ...summarize(answeredAt.map((at) => at - t0)), refreshMs, version: version + 1, wrong };
    },
  };
}
