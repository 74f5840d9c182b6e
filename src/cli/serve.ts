import { parseArgs } from "node:util";
import { ConfigError, DEFAULT_DB, DEFAULT_LISTEN, parseListen, positiveNumber, upstreamFromEnv } from "../config.js";
import { consentFromEnv } from "../consent/consent-config.js";
import { createLogger } from "../logger.js";
import { notificationsFromEnv } from "../notify/notify-config.js";
import { startBrokerServer, type BrokerServer } from "../server/broker-server.js";
import { identityFromConfig } from "./upstream-identity.js";
import type { Command, CommandIo } from "./command.js";
import { checkEncryptionKeys, serveSecurityFromFlags, SERVE_SECURITY_FLAGS, SERVE_SECURITY_HELP, startServeSecurity } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { LIMIT_FLAGS, LIMIT_HELP, limitsFromFlags } from "./limit-options.js";
import type { RefresherOptions } from "../broker/refresher.js";

/**
 * What a test entry (test/helpers/serve-with-fault-hooks.mjs) may hand `serveCommand.run` beside the usual io:
 * fault hooks inside each refresh. The shipped CLI passes none, and nothing reads them from the environment.
 */
export interface ServeTestIo extends CommandIo {
  testHooks?: RefresherOptions["testHooks"];
}

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
  --lease-ttl SECONDS    how long a refresh lease lasts; a crashed process's refresh is
                         finished by another (or the restarted) process this long after
                         it began, plus at most 1 s [TOKENBROKER_LEASE_TTL_SECONDS]
                         (default 30; must exceed TOKENBROKER_UPSTREAM_TIMEOUT_MS)
  --shutdown-grace SECONDS  on SIGTERM or Ctrl-C, exit within this long: a refresh
                         in flight may commit and calls finish until then, then its
                         request is abandoned (the next start finishes it)
                         [TOKENBROKER_SHUTDOWN_GRACE_SECONDS] (default 10)
  --log-level LEVEL      debug, info, warn or error [TOKENBROKER_LOG_LEVEL] (default info)
  --log-format FORMAT    json (one JSON object a line) or pretty (for people)
                         [TOKENBROKER_LOG_FORMAT] (default json)
${SERVE_SECURITY_HELP}
${LIMIT_HELP}
  -h, --help             show this help

Callers need an API key (\`tokenbroker keys create\`), sent as
\`authorization: Bearer <key>\`; SIGHUP re-reads the encryption key file.

Upstream (environment only, so that secrets stay out of the process list):
  TOKENBROKER_CLIENT_ID            your Xero app's client id (required)
  TOKENBROKER_CLIENT_SECRET        your Xero app's client secret (required)
  TOKENBROKER_ISSUER               default https://identity.xero.com
  TOKENBROKER_CONNECTIONS_URL      default https://api.xero.com/connections
  TOKENBROKER_UPSTREAM_TIMEOUT_MS  default 10000
  TOKENBROKER_ALLOW_INSECURE_ISSUER=1  allow http:// URLs (local tests only)

Notifications (a warning in the log, and a signed POST if a URL is set):
  TOKENBROKER_WEBHOOK_URL              where connection events are POSTed
  TOKENBROKER_WEBHOOK_SECRET           HMAC-SHA256 key of the tokenbroker-signature header
  TOKENBROKER_REFRESH_TOKEN_WARN_DAYS  warn this many days before an unrefreshed
                                       refresh token dies (default 7)

Metrics: GET /metrics on the same port (Prometheus text format).

Memory: run it as npm start and deploy/tokenbroker.service do, with
  NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=512"
Under load, V8's defaults take 55-90 MB more (npm run bench, scenario 4).

Status page: GET / on the same port; "Connect an organisation" (GET /connect)
starts Xero's consent flow, which comes back to the redirect URI:
  TOKENBROKER_REDIRECT_URI  default http://localhost:50051/oauth/callback
                            (register it with your Xero app)
  TOKENBROKER_SCOPES        default "openid profile email accounting.transactions
                            accounting.settings offline_access" (offline_access always added)
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: {
        listen: { type: "string" },
        db: { type: "string" },
        "lead-time": { type: "string" },
        "keepalive-days": { type: "string" },
        "lease-ttl": { type: "string" },
        "shutdown-grace": { type: "string" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        ...SERVE_SECURITY_FLAGS,
        ...LIMIT_FLAGS,
      },
      allowPositionals: false,
    });
    const env = io.env;
    const listen = parseListen(values.listen ?? env["TOKENBROKER_LISTEN"] ?? DEFAULT_LISTEN);
    const upstream = upstreamFromEnv(env);
    const consent = consentFromEnv(env);
    const leadTimeMs =
      1000 * positiveNumber("--lead-time", values["lead-time"] ?? env["TOKENBROKER_LEAD_TIME_SECONDS"], 300);
    const keepAliveAfterMs =
      86_400_000 * positiveNumber("--keepalive-days", values["keepalive-days"] ?? env["TOKENBROKER_KEEPALIVE_DAYS"], 30);
    const leaseTtlMs = 1000 * positiveNumber("--lease-ttl", values["lease-ttl"] ?? env["TOKENBROKER_LEASE_TTL_SECONDS"], 30);
    if (leaseTtlMs <= upstream.timeoutMs) {
      // A lease that lapses while its request may still be answered would let a second process spend the same refresh token.
      throw new ConfigError(
        `--lease-ttl (${leaseTtlMs / 1000} s) must be longer than TOKENBROKER_UPSTREAM_TIMEOUT_MS (${upstream.timeoutMs} ms)`,
      );
    }
    const shutdownGraceMs =
      1000 * positiveNumber("--shutdown-grace", values["shutdown-grace"] ?? env["TOKENBROKER_SHUTDOWN_GRACE_SECONDS"], 10);
    const logLevel = values["log-level"] ?? env["TOKENBROKER_LOG_LEVEL"] ?? "info";
    if (!["debug", "info", "warn", "error", "silent", "trace", "fatal"].includes(logLevel)) {
      throw new ConfigError(`--log-level must be debug, info, warn or error, not ${JSON.stringify(logLevel)}`);
    }
    const logFormat = values["log-format"] ?? env["TOKENBROKER_LOG_FORMAT"] ?? "json";
    if (logFormat !== "json" && logFormat !== "pretty") {
      throw new ConfigError(`--log-format must be json or pretty, not ${JSON.stringify(logFormat)}`);
    }
    const notifications = notificationsFromEnv(env);
    const limits = limitsFromFlags(values, env);
    const logger = createLogger({ level: logLevel, destination: io.err, format: logFormat });
    const securityConfig = serveSecurityFromFlags(values, env, listen.host);
    const store = await openStoreOrExplain(dbPath(values.db, env), securityConfig.cipher, logger);
    try {
      await checkEncryptionKeys(store, securityConfig.cipher);
    } catch (e) {
      await store.close();
      throw e;
    }
    const security = startServeSecurity(securityConfig, store, logger, env);
    const identity = identityFromConfig(upstream);
    // Listening for signals before the port opens: a SIGTERM sent as soon as "listening" is logged must stop
    // the server gracefully, not kill the process by the signal's default action.
    const stopped = new Promise<string>((resolve) => {
      process.once("SIGTERM", resolve);
      process.once("SIGINT", resolve);
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
        shutdownGraceMs,
        consent,
        refresher: { leaseTtlMs, ...testHooksOf(io) },
        notifications,
        ...(security.auth ? { auth: security.auth } : {}),
        audit: security.audit,
        ...(securityConfig.tls ? { tls: securityConfig.tls } : {}),
        limits,
      });
    } catch (e) {
      await security.close();
      await store.close();
      const code = (e as { code?: string }).code;
      if (code === "EADDRINUSE") throw new ConfigError(`cannot listen on ${listen.host}:${listen.port}: address in use`);
      if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND") {
        throw new ConfigError(`cannot listen on ${listen.host}:${listen.port}: no such local address`);
      }
      throw e;
    }
    await security.announce();
    const signal = await stopped;
    logger.info({ event: "signal", signal }, `received ${signal}, shutting down`);
    await server.close();
    await security.close();
    await store.close();
    return 0;
  },
};

function testHooksOf(io: ServeTestIo): Pick<RefresherOptions, "testHooks"> {
  return io.testHooks ? { testHooks: io.testHooks } : {};
}
