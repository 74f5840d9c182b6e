import { setMaxListeners } from "node:events";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  ConnectionState,
  GetTokenResponseSchema,
  ReportExpiredResponseSchema,
  TokenSchema,
  TokenService,
  WatchTokenResponseSchema,
  type Token,
  type WatchTokenResponse,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { drainUnreadBodies } from "../../src/server/drain-request.js";
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
 * HTTP/2 and HTTP/1.1, `connectNodeAdapter` with the same options, the same
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

  async function* watchToken(_req: unknown, ctx: HandlerContext): AsyncGenerator<WatchTokenResponse> {
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
      reportExpired: async () => {
        current = create(TokenSchema, { ...current, version: current.version + 1n });
        const change = nextChange;
        nextChange = deferred();
        change.resolve();
        return create(ReportExpiredResponseSchema, { token: current, refreshed: true });
      },
    });
  };
  const handler = connectNodeAdapter({
    routes,
    readMaxBytes: 64 * 1024,
    compressMinBytes: 16 * 1024,
    shutdownSignal: shutdown.signal,
    fallback: routeHttp([]),
  });
  const server: OnePortServer = await listenOnePort({ host: "127.0.0.1", port: 0, handler: drainUnreadBodies(handler) });
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
