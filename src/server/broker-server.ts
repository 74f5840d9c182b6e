import { setMaxListeners } from "node:events";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { systemClock, type Clock } from "../clock.js";
import { sleep } from "../broker/abortable.js";
import type { RefresherOptions } from "../broker/refresher.js";
import { Scheduler, type SchedulerOptions } from "../broker/scheduler.js";
import { TokenBroker } from "../broker/token-broker.js";
import { errorFields, silentLogger, type Logger } from "../logger.js";
import { TokenServiceImpl } from "../service/token-service.js";
import type { TokenStore } from "../store/token-store.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { routeHttp, type HttpRoute } from "./http-routes.js";
import { drainUnreadBodies } from "./drain-request.js";
import { listenOnePort, type OnePortServer } from "./one-port-server.js";
import { createRoutes } from "./routes.js";

/** Options for {@link startBrokerServer}. */
export interface BrokerServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 50051; 0 picks a free one). */
  port?: number;
  /** Where token sets live. The caller opens it and closes it after {@link BrokerServer.close}. */
  store: TokenStore;
  /** The identity server tokens are refreshed at. */
  identity: IdentityServer;
  clock?: Clock;
  logger?: Logger;
  /** Default minimum validity of a returned token, ms (default 60 000). */
  defaultMinValidForMs?: number;
  refresher?: RefresherOptions;
  scheduler?: SchedulerOptions;
  /** Largest request message accepted, bytes (default 64 KiB). */
  readMaxBytes?: number;
  /** Plain-HTTP routes served on the same port beside the RPCs (health, metrics, pages). */
  httpRoutes?: HttpRoute[];
  /** How long shutdown waits for requests in flight before closing connections, ms (default 10 000). */
  shutdownGraceMs?: number;
}

/** A running broker; see {@link startBrokerServer}. */
export interface BrokerServer {
  /** Base URL of the port, e.g. `http://127.0.0.1:50051`. */
  readonly url: string;
  readonly port: number;
  readonly broker: TokenBroker;
  readonly scheduler: Scheduler;
  /**
   * Graceful shutdown: stops accepting connections, ends watch streams with
   * UNAVAILABLE (clients reconnect elsewhere), commits any refresh in flight,
   * lets unary requests finish, then closes every connection.
   */
  close(): Promise<void>;
}

/**
 * Starts the token service on one port serving gRPC, gRPC-Web and Connect
 * over HTTP/1.1 and HTTP/2, with the proactive-refresh scheduler running.
 */
export async function startBrokerServer(options: BrokerServerOptions): Promise<BrokerServer> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const broker = new TokenBroker({
    store: options.store,
    identity: options.identity,
    clock,
    ...(options.defaultMinValidForMs === undefined ? {} : { defaultMinValidForMs: options.defaultMinValidForMs }),
    ...(options.refresher ? { refresher: options.refresher } : {}),
    onRefresh: (event) => {
      const level = event.outcome === "ok" || event.outcome === "already_fresh" ? "info" : "warn";
      logger[level]({ event: "refresh", ...event }, `refresh ${event.outcome}`);
    },
  });
  const scheduler = new Scheduler(broker, options.store, clock, {
    ...options.scheduler,
    onError: (e) => {
      if (!(e instanceof Error && e.name === "BrokerError")) logger.error(errorFields(e), "background refresh failed");
    },
  });
  const service = new TokenServiceImpl(broker, (e) => logger.error(errorFields(e), "internal error"));
  const shutdown = new AbortController();
  // Every request's context listens to the shutdown signal while it runs.
  setMaxListeners(0, shutdown.signal);
  const rpcHandler = connectNodeAdapter({
    routes: createRoutes(service),
    readMaxBytes: options.readMaxBytes ?? 64 * 1024,
    shutdownSignal: shutdown.signal,
    // Anything that is not an RPC: health, metrics, pages.
    fallback: routeHttp([...(options.httpRoutes ?? [])]),
  });

  const server: OnePortServer = await listenOnePort({
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 50051,
    handler: drainUnreadBodies(rpcHandler),
  });
  scheduler.start();
  const host = server.host.includes(":") ? `[${server.host}]` : server.host;
  const url = `http://${host}:${server.port}`;
  logger.info({ event: "listening", url }, `tokenbroker listening on ${url}`);

  let closing: Promise<void> | undefined;
  return {
    url,
    port: server.port,
    broker,
    scheduler,
    close() {
      closing ??= (async () => {
        server.stopAccepting();
        await scheduler.stop();
        await broker.close();
        server.closeGracefully();
        const idle = new AbortController();
        await Promise.race([
          server.idle().then(() => idle.abort()),
          sleep(options.shutdownGraceMs ?? 10_000, idle.signal),
        ]);
        shutdown.abort(new ConnectError("tokenbroker is shutting down", Code.Unavailable));
        server.destroyAll();
        logger.info({ event: "stopped" }, "tokenbroker stopped");
      })();
      return closing;
    },
  };
}
