import { parseArgs } from "node:util";
import { ConfigError, DEFAULT_DB, DEFAULT_LISTEN, parseListen, positiveNumber, upstreamFromEnv } from "../config.js";
import { createLogger } from "../logger.js";
import { startBrokerServer, type BrokerServer } from "../server/broker-server.js";
import { createOidcIdentityServer } from "../upstream/oidc-identity-server.js";
import type { Command } from "./command.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";

/** `tokenbroker serve`: run the token service. */
export const serveCommand: Command = {
  name: "serve",
  summary: "run the token service (gRPC, gRPC-Web and Connect on one port)",
  help: `Usage: tokenbroker serve [options]

Runs the token service: gRPC, gRPC-Web and Connect (JSON and binary) over
HTTP/1.1 and HTTP/2 on one port. Stops gracefully on SIGTERM or Ctrl-C.

Options (environment variable in brackets):
  --listen HOST:PORT     address to listen on [TOKENBROKER_LISTEN] (default ${DEFAULT_LISTEN})
  --db PATH              SQLite database file [TOKENBROKER_DB] (default ./${DEFAULT_DB})
  --lead-time SECONDS    refresh tokens in use this long before they expire
                         [TOKENBROKER_LEAD_TIME_SECONDS] (default 300; at most half a token's lifetime)
  --keepalive-days DAYS  refresh idle token sets when their refresh token is this old
                         [TOKENBROKER_KEEPALIVE_DAYS] (default 30; Xero's die at 60)
  --log-level LEVEL      debug, info, warn or error [TOKENBROKER_LOG_LEVEL] (default info)
  -h, --help             show this help

Upstream (environment only, so that secrets stay out of the process list):
  TOKENBROKER_CLIENT_ID            your Xero app's client id (required)
  TOKENBROKER_CLIENT_SECRET        your Xero app's client secret (required)
  TOKENBROKER_ISSUER               default https://identity.xero.com
  TOKENBROKER_CONNECTIONS_URL      default https://api.xero.com/connections
  TOKENBROKER_UPSTREAM_TIMEOUT_MS  default 10000
  TOKENBROKER_ALLOW_INSECURE_ISSUER=1  allow http:// URLs (local tests only)
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: {
        listen: { type: "string" },
        db: { type: "string" },
        "lead-time": { type: "string" },
        "keepalive-days": { type: "string" },
        "log-level": { type: "string" },
      },
      allowPositionals: false,
    });
    const env = io.env;
    const listen = parseListen(values.listen ?? env["TOKENBROKER_LISTEN"] ?? DEFAULT_LISTEN);
    const upstream = upstreamFromEnv(env);
    const leadTimeMs =
      1000 * positiveNumber("--lead-time", values["lead-time"] ?? env["TOKENBROKER_LEAD_TIME_SECONDS"], 300);
    const keepAliveAfterMs =
      86_400_000 * positiveNumber("--keepalive-days", values["keepalive-days"] ?? env["TOKENBROKER_KEEPALIVE_DAYS"], 30);
    const logLevel = values["log-level"] ?? env["TOKENBROKER_LOG_LEVEL"] ?? "info";
    if (!["debug", "info", "warn", "error", "silent", "trace", "fatal"].includes(logLevel)) {
      throw new ConfigError(`--log-level must be debug, info, warn or error, not ${JSON.stringify(logLevel)}`);
    }
    const logger = createLogger({ level: logLevel, destination: io.err });
    const store = openStoreOrExplain(dbPath(values.db, env));
    const identity = createOidcIdentityServer({
      issuer: upstream.issuer,
      connectionsUrl: upstream.connectionsUrl,
      clientId: upstream.clientId,
      clientSecret: upstream.clientSecret,
      allowInsecure: upstream.allowInsecureIssuer,
      timeoutMs: upstream.timeoutMs,
    });
    let server: BrokerServer;
    try {
      server = await startBrokerServer({
        host: listen.host,
        port: listen.port,
        store,
        identity,
        logger,
        scheduler: { leadTimeMs, keepAliveAfterMs },
      });
    } catch (e) {
      await store.close();
      const code = (e as { code?: string }).code;
      if (code === "EADDRINUSE") throw new ConfigError(`cannot listen on ${listen.host}:${listen.port}: address in use`);
      if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND") {
        throw new ConfigError(`cannot listen on ${listen.host}:${listen.port}: no such local address`);
      }
      throw e;
    }
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info({ event: "signal", signal }, `received ${signal}, shutting down`);
        resolve();
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
    });
    await server.close();
    await store.close();
    return 0;
  },
};
