import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { GetTokenRequestSchema, TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startServerHost, type BenchContext } from "../context.js";
import type { Host } from "../ipc.js";
import type { H2loadLoad } from "../load/h2load.js";
import { pairedRounds, type PairedServer, type PairedSide } from "../load/paired-rounds.js";
import type { ServerHostApi } from "../server/main.js";
import { median, round } from "../stats.js";

/** The cached GetToken rate of the broker on a PostgreSQL store against the same broker on a SQLite file. */
export interface StoreFigures {
  /** The wire protocol of the calls, e.g. "gRPC (h2c)". */
  label: string;
  /** HTTP/2 connections × streams each: the requests in flight. */
  connections: number;
  streams: number;
  postgres: PairedSide;
  sqlite: PairedSide;
  /** Median over the rounds of PostgreSQL req/s ÷ SQLite req/s (target ≥ 0.9). */
  ratio: number;
  /** The rounds' ratios, in order. */
  ratios: number[];
  /** Median over the rounds of SQLite ÷ PostgreSQL CPU µs per call. */
  cpuRatio: number;
}

/**
 * Scenario 8: cached GetToken on each store. Two brokers as production runs
 * them (API keys required, audit log on, tokens encrypted), one on a new
 * SQLite file and one on a new database of `postgresUrl`'s server, each in
 * a process of its own, loaded in turn by h2load over gRPC (as scenario 1),
 * the order swapped every round. The read cache keeps the database off a
 * cached call's path, so both should answer at the same rate; the audit log's
 * writes (batched, once a second) are the store's only work under this load.
 *
 * @param createDatabase - makes a new, empty PostgreSQL database and returns its URL.
 */
export async function benchCachedByStore(ctx: BenchContext, createDatabase: () => Promise<string>): Promise<StoreFigures> {
  const hosts: Array<Host<ServerHostApi>> = [];
  try {
    const start = async (store: string | undefined): Promise<PairedServer> => {
      const host = await startServerHost();
      hosts.push(host);
      const broker = await host.call("startBroker", { clock: "system", auth: true, ...(store === undefined ? {} : { store }) });
      if (!broker.apiKey) throw new Error("the broker made no API key");
      const headers = { authorization: `Bearer ${broker.apiKey}` };
      const request = create(GetTokenRequestSchema, { selector: { case: "tenantId", value: broker.tenantId } });
      // A real client gets a token first: h2load checks HTTP statuses only, gRPC's is in the trailers.
      const { token } = await createClient(TokenService, createGrpcTransport({ baseUrl: broker.url })).getToken(request, { headers });
      if (!token?.accessToken) throw new Error(`the broker on ${store === undefined ? "SQLite" : "PostgreSQL"} returned no token`);
      return {
        host,
        request: {
          url: `${broker.url}/${TokenService.typeName}/GetToken`,
          h1: false,
          headers: { "content-type": "application/grpc", te: "trailers", ...headers },
          body: encodeEnvelope(0, toBinary(GetTokenRequestSchema, request)),
        },
      };
    };
    const postgres = await start(await createDatabase());
    const sqlite = await start(undefined);
    const load: H2loadLoad = { connections: 2, streams: 8, durationS: ctx.quick ? 0.3 : 2 };
    const paired = await pairedRounds(postgres, sqlite, { rounds: ctx.quick ? 1 : 5, load, warmupS: ctx.quick ? 0.1 : 0.5 });
    const figures: StoreFigures = {
      label: "gRPC (h2c)",
      connections: load.connections,
      streams: load.streams,
      postgres: paired.a,
      sqlite: paired.b,
      ratio: round(median(paired.ratios), 3),
      ratios: paired.ratios,
      cpuRatio: round(median(paired.cpuRatios), 3),
    };
    ctx.progress(
      `cached GetToken by store: PostgreSQL ${figures.postgres.rps}/s (${figures.postgres.serverCpuUsPerRequest} µs CPU), ` +
        `SQLite ${figures.sqlite.rps}/s (${figures.sqlite.serverCpuUsPerRequest} µs), ratio ${figures.ratio} [${figures.ratios.join(", ")}], CPU ratio ${figures.cpuRatio}`,
    );
    return figures;
  } finally {
    for (const host of hosts) await host.stop();
  }
}
