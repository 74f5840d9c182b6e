import { summarize, type LatencySummary } from "../stats.js";
import type { BenchSelector } from "./clients.js";
import { createRawGrpcClient, type RawGrpcClient } from "./raw-grpc-client.js";

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

/** Calls started per turn of the event loop in a storm. */
const SEND_GROUP = 50;

/**
 * Opens the connections (each warmed with one GetToken), so that `fire`
 * measures only the storm: `callers` GetToken requests over gRPC sent in one
 * burst, at the moment the stored token has expired. The calls go through the
 * minimal `node:http2` client ({@link createRawGrpcClient}), so that this one
 * process, standing in for callers spread over many processes and hosts, is
 * not what limits the storm.
 */
export async function prepareStorm(options: StormOptions): Promise<Storm> {
  const clients = Array.from({ length: options.connections }, () => createRawGrpcClient(options.url));
  await Promise.all(clients.map((c) => c.getToken(options.selector)));
  return {
    async fire() {
      const latencies: number[] = [];
      const versions = new Set<bigint>();
      let errors = 0;
      const t0 = performance.now();
      let last = t0;
      const call = async (client: RawGrpcClient) => {
        try {
          const { token } = await client.getToken(options.selector);
          last = performance.now();
          latencies.push(last - t0);
          versions.add(token?.version ?? -1n);
        } catch {
          last = performance.now();
          errors++;
        }
      };
      // Independent callers' requests reach the wire as each is made. Made all in one go here, the first
      // byte would leave only after this one process had built all of them: so the calls start in groups
      // of SEND_GROUP, one group per turn of the event loop (about 1 ms apart), each sent as it is made.
      const calls: Array<Promise<void>> = [];
      for (let i = 0; i < options.callers; i++) {
        if (i > 0 && i % SEND_GROUP === 0) await new Promise((resolve) => setImmediate(resolve));
        calls.push(call(clients[i % clients.length]!));
      }
      await Promise.all(calls);
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
