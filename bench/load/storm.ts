import { summarize, type LatencySummary } from "../stats.js";
import { createGrpcClient, type BenchSelector } from "./clients.js";

/** Options for {@link prepareStorm}. */
export interface StormOptions {
  url: string;
  /** Concurrent callers. */
  callers: number;
  /** HTTP/2 connections they are spread over. */
  connections: number;
  selector: BenchSelector;
}

/** What one storm measured. */
export interface StormResult extends LatencySummary {
  /** From the first request sent to the first answer received, ms. */
  firstServedMs: number;
  /** From the first request sent to the last answer received, ms. */
  lastServedMs: number;
  /** Distinct token versions handed out (1 when every caller got the one new token). */
  versions: number[];
  errors: number;
}

/** Callers connected in advance; {@link Storm.fire} sends every request at once. */
export interface Storm {
  fire(): Promise<StormResult>;
}

/**
 * Opens the connections (each warmed with one GetToken), so that `fire`
 * measures only the storm: `callers` GetToken requests over gRPC sent in one
 * burst, at the moment the stored token has expired.
 */
export async function prepareStorm(options: StormOptions): Promise<Storm> {
  const clients = Array.from({ length: options.connections }, () => createGrpcClient(options.url));
  await Promise.all(clients.map((c) => c.getToken({ selector: options.selector })));
  return {
    async fire() {
      const latencies: number[] = [];
      const versions = new Set<bigint>();
      let errors = 0;
      const t0 = performance.now();
      let last = t0;
      await Promise.all(
        Array.from({ length: options.callers }, async (_, i) => {
          const client = clients[i % clients.length]!;
          try {
            const { token } = await client.getToken({ selector: options.selector });
            last = performance.now();
            latencies.push(last - t0);
            versions.add(token?.version ?? -1n);
          } catch {
            last = performance.now();
            errors++;
          }
        }),
      );
      return {
        ...summarize(latencies),
        firstServedMs: Math.min(...latencies),
        lastServedMs: last - t0,
        versions: [...versions].map(Number),
        errors,
      };
    },
  };
}
