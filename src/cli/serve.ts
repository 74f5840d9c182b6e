import { parseArgs } from "node:util";
import { ConfigError } from "../config.js";
import { createLogger } from "../logger.js";
import { startBrokerServer, type BrokerServer } from "../server/broker-server.js";
import { SERVE_SETTINGS } from "../settings/all-settings.js";
import { DOCS_PAGE } from "../settings/settings-docs.js";
import { settingsHelp } from "../settings/settings-help.js";
import { identityFromConfig } from "./upstream-identity.js";
import type { Command, CommandIo } from "./command.js";
import { checkEncryptionKeys, startServeSecurity } from "./security-options.js";
import { openStoreOrExplain } from "./store-options.js";
import { SERVE_FLAGS, serveConfigFrom } from "./serve-config.js";
import type { RefresherOptions } from "../broker/refresher.js";
import { createCallBudget } from "../quota/quota-keeper.js";

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

Settings: a flag wins over its environment variable (in brackets), which
wins over the default. Xero's, the notifications' and the consent's are
environment variables only, so that secrets stay out of the process list.
Every setting, with what it accepts: ${DOCS_PAGE}.

${settingsHelp(SERVE_SETTINGS)}

  -h, --help             show this help

Callers need an API key (\`tokenbroker keys create\`), sent as
\`authorization: Bearer <key>\`; SIGHUP re-reads the encryption key file.

Metrics: GET /metrics on the same port (Prometheus text format).

Xero API proxy: /xero/{path} on the same port forwards a channel's call
(its API key in authorization, the organisation in xero-tenant-id) to
TOKENBROKER_API_URL with the organisation's access token (docs/proxy.md).

Memory: run it as npm start and deploy/tokenbroker.service do, with
  NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=512"
Under load, V8's defaults take 55-90 MB more (npm run bench, scenario 4).

Status page: GET / on the same port; "Connect an organisation" (GET /connect)
starts Xero's consent flow, which comes back to the redirect URI.
`,
  async run(args, io) {
    const { values } = parseArgs({ args, options: SERVE_FLAGS, allowPositionals: false });
    const env = io.env;
    const config = serveConfigFrom(values, env);
    const { listen, upstream, consent, leadTimeMs, keepAliveAfterMs, leaseTtlMs, shutdownGraceMs, notifications, limits } = config;
    const securityConfig = config.security;
    const logger = createLogger({ level: config.logLevel, destination: io.err, format: config.logFormat });
    const store = await openStoreOrExplain(config.db, securityConfig.cipher, logger, { poolSize: config.dbPoolSize });
    try {
      await checkEncryptionKeys(store, securityConfig.cipher);
    } catch (e) {
      await store.close();
      throw e;
    }
    const security = startServeSecurity(securityConfig, store, logger, env);
    // Xero's call limits, shared through the store with every broker on it.
    const quota = createCallBudget({ store: store.quota, ...config.quota, logger });
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
        tenantRefresh: { intervalMs: config.tenantCheckIntervalMs },
        notifications,
        ...(security.auth ? { auth: security.auth } : {}),
        audit: security.audit,
        ...(securityConfig.tls ? { tls: securityConfig.tls } : {}),
        limits,
        ...(config.proxy ? { proxy: config.proxy } : {}),
        quota,
      });
    } catch (e) {
      quota.close();
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
    quota.close();
    await quota.idle();
    await security.close();
    await store.close();
    return 0;
  },
};

function testHooksOf(io: ServeTestIo): Pick<RefresherOptions, "testHooks"> {
  return io.testHooks ? { testHooks: io.testHooks } : {};
}
