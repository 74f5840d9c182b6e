import { setMaxListeners } from "node:events";
import { create, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { createConnectRouter, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  ConnectionState,
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  ReportExpiredRequestSchema,
  ReportExpiredResponseSchema,
  TokenSchema,
  TokenService,
  WatchTokenRequestSchema,
  WatchTokenResponseSchema,
  type Token,
  type WatchTokenResponse,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { drainUnreadBodies } from "../../src/server/drain-request.js";
import { createCallGuard } from "../../src/server/call-guard.js";
import { connectFallback } from "../../src/server/connect-fallback.js";
import { createGrpcFastPath, type FastAnswer, type FastMethod } from "../../src/server/grpc-fast-path.js";
import { routeHttp } from "../../src/server/http-routes.js";
import { listenOnePort, type OnePortServer } from "../../src/server/one-port-server.js";

/** A server on the broker's stack that answers from constants. */
export interface BareServer {
  readonly url: string;
  /** Open WatchToken streams. */
  readonly watchers: number;
  close(): Promise<void>;
}

/**
 * The baseline: the same transport stack as `startBrokerServer` (one port for
 * HTTP/2 and HTTP/1.1, the gRPC fast path for plain gRPC calls,
 * `connectNodeAdapter` with the same options for the rest, the same
 * body-draining wrapper), with no broker behind it. GetToken returns a
 * constant `Token` (`token` is its proto JSON: the same bytes the broker
 * sends); WatchToken sends it and then whatever ReportExpired "refreshes" (the
 * same token, version + 1, handed to every open stream at once).
 */
export async function startBareServer(token: JsonValue): Promise<BareServer> {
  let current: Token = fromJson(TokenSchema, token);
  const getTokenResponse = create(GetTokenResponseSchema, { token: current });
  let watchers = 0;
  let nextChange = deferred();
  const shutdown = new AbortController();
  setMaxListeners(0, shutdown.signal);

  const reportExpired = async () => {
    current = create(TokenSchema, { ...current, version: current.version + 1n });
    const change = nextChange;
    nextChange = deferred();
    change.resolve();
    return create(ReportExpiredResponseSchema, { token: current, refreshed: true });
  };

  async function* watchToken(_req: unknown, ctx: { signal: AbortSignal }): AsyncGenerator<WatchTokenResponse> {
    watchers++;
    const aborted = new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    try {
      for (;;) {
        yield create(WatchTokenResponseSchema, { token: current, state: ConnectionState.ACTIVE });
        await Promise.race([nextChange.promise, aborted]);
        if (ctx.signal.aborted) return;
      }
    } finally {
      watchers--;
    }
  }

  const routes = (router: ConnectRouter) => {
    router.service(TokenService, {
      getToken: async () => getTokenResponse,
      watchToken,
      reportExpired,
    });
  };
  const handler = connectNodeAdapter({
    routes,
    readMaxBytes: 64 * 1024,
    compressMinBytes: 16 * 1024,
    shutdownSignal: shutdown.signal,
    fallback: routeHttp([]),
  });
  // The broker's gRPC fast path, answering from the same constants: the transport the broker's plain gRPC calls take.
  const getTokenAnswer = { message: getTokenResponse, bytes: toBinary(GetTokenResponseSchema, getTokenResponse), token: current };
  // As the broker does: each token serialized once for all its subscribers.
  const watchFrames = new WeakMap<Token, FastAnswer>();
  const watchAnswer = () => {
    let answer = watchFrames.get(current);
    if (!answer) {
      const message = create(WatchTokenResponseSchema, { token: current, state: ConnectionState.ACTIVE });
      answer = { message, bytes: toBinary(WatchTokenResponseSchema, message), token: current };
      watchFrames.set(current, answer);
    }
    return answer;
  };
  const router = createConnectRouter({ readMaxBytes: 64 * 1024 });
  routes(router);
  const path = (name: string) => `/${TokenService.typeName}/${name}`;
  const fastPath = createGrpcFastPath({
    readMaxBytes: 64 * 1024,
    guard: createCallGuard([]),
    fallback: connectFallback({ handlers: router.handlers }),
    onInternalError: () => {},
    methods: new Map<string, FastMethod>([
      [path("GetToken"), { kind: "unary", input: GetTokenRequestSchema, handle: async () => getTokenAnswer }],
      [
        path("ReportExpired"),
        {
          kind: "unary",
          input: ReportExpiredRequestSchema,
          handle: async () => {
            const response = await reportExpired();
            return { message: response, bytes: toBinary(ReportExpiredResponseSchema, response), token: response.token };
          },
        },
      ],
      [
        path("WatchToken"),
        {
          kind: "server_streaming",
          input: WatchTokenRequestSchema,
          handle: async (_request, call) => {
            watchers++;
            const aborted = new Promise<void>((resolve) => call.signal.addEventListener("abort", () => resolve(), { once: true }));
            try {
              for (;;) {
                await call.send(watchAnswer());
                await Promise.race([nextChange.promise, aborted]);
                if (call.signal.aborted) return;
              }
            } finally {
              watchers--;
            }
          },
        },
      ],
    ]),
  });
  const server: OnePortServer = await listenOnePort({
    host: "127.0.0.1",
    port: 0,
    handler: drainUnreadBodies(handler),
    streamHandler: fastPath,
  });
  return {
    url: `http://${server.host}:${server.port}`,
    get watchers() {
      return watchers;
    },
    async close() {
      server.stopAccepting();
      shutdown.abort();
      server.destroyAll();
    },
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
