/**
 * An independent gRPC implementation, `@grpc/grpc-js`, against the real broker
 * server: proves the server speaks plain gRPC over HTTP/2 cleartext to a client
 * that shares no code with connect-es (only the protobuf-es message codecs).
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ConnectionState,
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  ReportExpiredRequestSchema,
  ReportExpiredResponseSchema,
  WatchTokenRequestSchema,
  WatchTokenResponseSchema,
  type GetTokenResponse,
  type ReportExpiredResponse,
  type WatchTokenRequest,
  type WatchTokenResponse,
} from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";

/** A grpc-js method definition whose (de)serialisers are protobuf-es codecs. */
function method<I extends DescMessage, O extends DescMessage>(
  name: string,
  input: I,
  output: O,
  responseStream: boolean,
): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path: `/tokenbroker.v1.TokenService/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: (m: MessageShape<I>) => Buffer.from(toBinary(input, m)),
    requestDeserialize: (b: Buffer) => fromBinary(input, b),
    responseSerialize: (m: MessageShape<O>) => Buffer.from(toBinary(output, m)),
    responseDeserialize: (b: Buffer) => fromBinary(output, b),
  };
}

const serviceDefinition = {
  GetToken: method("GetToken", GetTokenRequestSchema, GetTokenResponseSchema, false),
  ReportExpired: method("ReportExpired", ReportExpiredRequestSchema, ReportExpiredResponseSchema, false),
  WatchToken: method("WatchToken", WatchTokenRequestSchema, WatchTokenResponseSchema, true),
};
const TokenServiceClient = grpc.makeGenericClientConstructor(serviceDefinition, "TokenService");

/** Typed wrappers over the generic grpc-js client. */
interface GrpcJsTokenClient {
  getToken(init: MessageInitShape<typeof GetTokenRequestSchema>): Promise<GetTokenResponse>;
  reportExpired(init: MessageInitShape<typeof ReportExpiredRequestSchema>): Promise<ReportExpiredResponse>;
  watchToken(init: MessageInitShape<typeof WatchTokenRequestSchema>): grpc.ClientReadableStream<WatchTokenResponse>;
  close(): void;
}

function connect(url: string): GrpcJsTokenClient {
  const target = new URL(url).host; // "127.0.0.1:PORT"
  const client = new TokenServiceClient(target, grpc.credentials.createInsecure());
  const unary =
    <S extends DescMessage, Res>(name: string, schema: S) =>
    (init: MessageInitShape<S>): Promise<Res> =>
      new Promise((resolve, reject) => {
        const fn = client[name] as (
          req: MessageShape<S>,
          options: grpc.CallOptions,
          cb: (err: grpc.ServiceError | null, res?: Res) => void,
        ) => grpc.ClientUnaryCall;
        fn.call(client, create(schema, init), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
      });
  return {
    getToken: unary<typeof GetTokenRequestSchema, GetTokenResponse>("GetToken", GetTokenRequestSchema),
    reportExpired: unary<typeof ReportExpiredRequestSchema, ReportExpiredResponse>("ReportExpired", ReportExpiredRequestSchema),
    watchToken(init) {
      const fn = client["WatchToken"] as (req: WatchTokenRequest) => grpc.ClientReadableStream<WatchTokenResponse>;
      return fn.call(client, create(WatchTokenRequestSchema, init));
    },
    close: () => client.close(),
  };
}

// Token values are compared as booleans below, so a failing assertion prints no token.

/** The rejection of `promise`, which must reject. */
async function rejection(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the call should have failed").toBeInstanceOf(Error);
  return error as grpc.ServiceError;
}

/** Collects a server stream's messages; `next(n)` resolves once n have arrived. */
function collect<T>(stream: grpc.ClientReadableStream<T>): {
  messages: T[];
  next(n: number, timeoutMs?: number): Promise<T>;
  ended: Promise<grpc.StatusObject | grpc.ServiceError>;
} {
  const messages: T[] = [];
  const waiters: Array<{ n: number; resolve: (m: T) => void }> = [];
  stream.on("data", (m: T) => {
    messages.push(m);
    for (const w of waiters.splice(0)) {
      if (messages.length >= w.n) w.resolve(messages[w.n - 1]!);
      else waiters.push(w);
    }
  });
  const ended = new Promise<grpc.StatusObject | grpc.ServiceError>((resolve) => {
    stream.on("error", (e: grpc.ServiceError) => resolve(e));
    stream.on("status", (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) resolve(s);
    });
  });
  return {
    messages,
    ended,
    next(n, timeoutMs = 5000) {
      if (messages.length >= n) return Promise.resolve(messages[n - 1]!);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stream message ${n} did not arrive in ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          n,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      });
    },
  };
}

describe("@grpc/grpc-js client against the broker server", () => {
  let f: BrokerFixture;
  let client: GrpcJsTokenClient;

  beforeEach(async () => {
    f = await startBroker();
    client = connect(f.server.url);
  });

  afterEach(async () => {
    client?.close();
    await f?.close();
  });

  it("GetToken by tenant id returns the stored token with every field right", async () => {
    const before = f.fake.tokenEndpointCalls;
    const stored = await f.store.tokens.getToken(f.connectionId);
    const { token } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(token).toBeDefined();
    expect(token!.accessToken === stored!.accessToken, "the stored access token is served").toBe(true);
    expect(token!.tokenType).toBe("Bearer");
    expect(token!.connectionId).toBe(f.connectionId);
    expect([...token!.tenantIds].sort()).toEqual(f.imported.tenants.map((t) => t.tenantId).sort());
    expect(token!.tenantIds).toHaveLength(2);
    expect(token!.scopes).toEqual(stored!.scopes);
    expect(token!.scopes.length).toBeGreaterThan(0);
    expect(token!.version).toBe(BigInt(stored!.version));
    expect(token!.expiresAt).toBeDefined();
    expect(timestampMs(token!.expiresAt!)).toBe(stored!.expiresAt);
    expect(timestampMs(token!.expiresAt!)).toBeGreaterThan(f.clock.now());
    // A valid stored token is served without an upstream call.
    expect(f.fake.tokenEndpointCalls).toBe(before);

    const byConnection = await client.getToken({ selector: { case: "connectionId", value: f.connectionId } });
    expect(byConnection.token?.accessToken === token!.accessToken, "same token by connection id").toBe(true);
  });

  it("an unknown tenant is NOT_FOUND (status 5)", async () => {
    const error = await rejection(client.getToken({ selector: { case: "tenantId", value: "00000000-0000-0000-0000-000000000000" } }));
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.code).toBe(5);
    expect(error.details).toMatch(/not connected|not found/);
  });

  it("a request naming no token set is INVALID_ARGUMENT (status 3)", async () => {
    const error = await rejection(client.getToken({}));
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.code).toBe(3);
    expect(error.details).toMatch(/tenant_id|connection_id/);
  });

  it("WatchToken streams the first token at once, then the refreshed one", async () => {
    const stream = client.watchToken({ selector: { case: "tenantId", value: f.tenantId } });
    const watched = collect(stream);
    try {
      const first = await watched.next(1);
      expect(first.state).toBe(ConnectionState.ACTIVE);
      const stored = await f.store.tokens.getToken(f.connectionId);
      expect(first.token?.accessToken === stored!.accessToken, "first message carries the stored token").toBe(true);
      expect(first.token?.version).toBe(BigInt(stored!.version));

      // A channel's API call got 401 with this token: report it (also over grpc-js).
      const before = f.fake.tokenEndpointCalls;
      const report = await client.reportExpired({
        selector: { case: "connectionId", value: f.connectionId },
        accessToken: first.token!.accessToken,
      });
      expect(report.refreshed).toBe(true);
      expect(f.fake.tokenEndpointCalls - before).toBe(1);

      const second = await watched.next(2);
      expect(second.state).toBe(ConnectionState.ACTIVE);
      expect(second.token?.version).toBe(first.token!.version + 1n);
      expect(second.token?.accessToken === first.token!.accessToken, "a new access token").toBe(false);
      expect(second.token?.accessToken === report.token?.accessToken, "the streamed token is the reported refresh").toBe(true);
      expect(second.token?.connectionId).toBe(f.connectionId);
      expect(timestampMs(second.token!.expiresAt!)).toBeGreaterThan(f.clock.now());

      // A second refresh, this time by expiry and a GetToken.
      await f.expireToken();
      const got = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
      const third = await watched.next(3);
      expect(third.token?.version).toBe(first.token!.version + 2n);
      expect(third.token?.accessToken === got.token?.accessToken, "the streamed token is the one GetToken got").toBe(true);
      expect(watched.messages).toHaveLength(3);
    } finally {
      stream.cancel();
    }
    const end = await watched.ended;
    expect(end.code).toBe(grpc.status.CANCELLED);
  });

  it("WatchToken of an unknown connection ends with NOT_FOUND", async () => {
    const watched = collect(client.watchToken({ selector: { case: "connectionId", value: "no-such-connection" } }));
    const end = await watched.ended;
    expect(end.code).toBe(grpc.status.NOT_FOUND);
    expect(watched.messages).toHaveLength(0);
  });
});
