import { create, toBinary, toJsonString, type JsonValue } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { toJson } from "@bufbuild/protobuf";
import { GetTokenRequestSchema, TokenSchema, TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startServerHost, type BenchContext } from "../context.js";
import type { H2loadLoad } from "../load/h2load.js";
import { pairedRounds, type PairedSide } from "../load/paired-rounds.js";
import type { PlainServerUrls } from "../server/plain-host.js";
import { median, round } from "../stats.js";

/** The wire protocols compared, each against the plain server a user would otherwise run for it. */
export type CachedProtocol = "grpc" | "connect-json-h1" | "connect-binary-h1" | "connect-json-h2" | "connect-binary-h2";

const PROTOCOLS: Record<
  CachedProtocol,
  { label: string; plain: keyof PlainServerUrls; plainLabel: string; h1: boolean; contentType: string }
> = {
  grpc: { label: "gRPC (h2c)", plain: "grpc", plainLabel: "@grpc/grpc-js", h1: false, contentType: "application/grpc" },
  "connect-json-h1": {
    label: "Connect JSON, HTTP/1.1",
    plain: "connectH1",
    plainLabel: "connect-node",
    h1: true,
    contentType: "application/json",
  },
  "connect-binary-h1": {
    label: "Connect binary, HTTP/1.1",
    plain: "connectH1",
    plainLabel: "connect-node",
    h1: true,
    contentType: "application/proto",
  },
  "connect-json-h2": {
    label: "Connect JSON, HTTP/2",
    plain: "connectH2",
    plainLabel: "connect-node",
    h1: false,
    contentType: "application/json",
  },
  "connect-binary-h2": {
    label: "Connect binary, HTTP/2",
    plain: "connectH2",
    plainLabel: "connect-node",
    h1: false,
    contentType: "application/proto",
  },
};

/** What one server did over one protocol, all rounds pooled. */
export type CachedSide = PairedSide;

/** One row of the cached-GetToken table. */
export interface CachedRow {
  protocol: CachedProtocol;
  label: string;
  /** The plain server measured against (`@grpc/grpc-js` or `connect-node`). */
  plainServer: string;
  /** Requests in flight: HTTP/2 connections × streams each, or HTTP/1.1 connections. */
  connections: number;
  streams: number;
  broker: CachedSide;
  plain: CachedSide;
  /** Median over the rounds of broker req/s ÷ plain req/s (target ≥ 0.9). */
  ratio: number;
  /** The rounds' ratios, in order. */
  ratios: number[];
  /**
   * Median over the rounds of plain CPU µs per call ÷ broker CPU µs per call:
   * the throughput ratio of two saturated servers, and much steadier than
   * `ratio` on a machine whose cores other work takes.
   */
  cpuRatio: number;
}

/** Options of the cached-GetToken scenario (`npm run bench -- --only cached`). */
export interface CachedOptions {
  rounds: number;
  windowS: number;
  warmupS: number;
}

/**
 * Scenario 1: cached GetToken, the broker as production runs it (API keys
 * required, audit log on) against the fastest plain server a user could write
 * for each protocol (`bench/server/plain-host.ts`), each answering the same
 * token bytes, with h2load as the load generator (C, its own process: not the
 * bottleneck). Each protocol alternates broker and plain windows, the order
 * swapped every round, so that other work on the machine falls on both alike;
 * the ratio is the median of the rounds' ratios.
 */
export async function benchCachedGetToken(ctx: BenchContext): Promise<CachedRow[]> {
  const brokerHost = await startServerHost();
  const plainHost = await startServerHost();
  try {
    const broker = await brokerHost.call("startBroker", { clock: "system", auth: true });
    const headers: Record<string, string> = broker.apiKey ? { authorization: `Bearer ${broker.apiKey}` } : {};
    const request = create(GetTokenRequestSchema, { selector: { case: "tenantId", value: broker.tenantId } });
    const grpcClient = createClient(TokenService, createGrpcTransport({ baseUrl: broker.url }));
    const { token } = await grpcClient.getToken(request, { headers });
    if (!token) throw new Error("the broker returned no token");
    const tokenJson = toJson(TokenSchema, token);
    const plain = await plainHost.call("startPlain", tokenJson);

    const rounds = ctx.quick ? 1 : 5;
    const load = (h1: boolean): H2loadLoad => ({ connections: h1 ? 16 : 2, streams: h1 ? 1 : 8, durationS: ctx.quick ? 0.3 : 2 });
    const rows: CachedRow[] = [];
    for (const protocol of Object.keys(PROTOCOLS) as CachedProtocol[]) {
      const p = PROTOCOLS[protocol];
      const urls = { broker: broker.url, plain: plain[p.plain] };
      // The same answer from both, through a real client, before any load.
      for (const which of ["broker", "plain"] as const)
        await expectToken(transportFor(protocol, urls[which]), request, headers, tokenJson, `${which} over ${p.label}`);
      const body =
        protocol === "grpc"
          ? encodeEnvelope(0, toBinary(GetTokenRequestSchema, request))
          : p.contentType === "application/json"
            ? new TextEncoder().encode(toJsonString(GetTokenRequestSchema, request))
            : toBinary(GetTokenRequestSchema, request);
      const requestHeaders = {
        "content-type": p.contentType,
        ...(protocol === "grpc" ? { te: "trailers" } : { "connect-protocol-version": "1" }),
        ...headers,
      };
      const h2request = (url: string) => ({ url: `${url}/${TokenService.typeName}/GetToken`, h1: p.h1, headers: requestHeaders, body });
      const paired = await pairedRounds(
        { host: brokerHost, request: h2request(urls.broker) },
        { host: plainHost, request: h2request(urls.plain) },
        { rounds, load: load(p.h1), warmupS: ctx.quick ? 0.1 : 0.5 },
      );
      const ratios = paired.ratios;
      const l = load(p.h1);
      const row: CachedRow = {
        protocol,
        label: p.label,
        plainServer: p.plainLabel,
        connections: l.connections,
        streams: l.streams,
        broker: paired.a,
        plain: paired.b,
        ratio: round(median(ratios), 3),
        ratios,
        cpuRatio: round(median(paired.cpuRatios), 3),
      };
      ctx.progress(
        `cached GetToken ${row.label}: broker ${row.broker.rps}/s (${row.broker.serverCpuUsPerRequest} µs CPU), ${p.plainLabel} ${row.plain.rps}/s (${row.plain.serverCpuUsPerRequest} µs), ratio ${row.ratio} [${ratios.join(", ")}], CPU ratio ${row.cpuRatio}`,
      );
      rows.push(row);
    }
    return rows;
  } finally {
    await brokerHost.stop();
    await plainHost.stop();
  }
}

function transportFor(protocol: CachedProtocol, baseUrl: string): Transport {
  if (protocol === "grpc") return createGrpcTransport({ baseUrl });
  const p = PROTOCOLS[protocol];
  return createConnectTransport({ baseUrl, httpVersion: p.h1 ? "1.1" : "2", useBinaryFormat: p.contentType === "application/proto" });
}

async function expectToken(
  transport: Transport,
  request: Parameters<ReturnType<typeof createClient<typeof TokenService>>["getToken"]>[0],
  headers: Record<string, string>,
  expected: JsonValue,
  what: string,
): Promise<void> {
  const { token } = await createClient(TokenService, transport).getToken(request, { headers });
  if (!token || JSON.stringify(toJson(TokenSchema, token)) !== JSON.stringify(expected)) throw new Error(`${what}: not the broker's token`);
}
