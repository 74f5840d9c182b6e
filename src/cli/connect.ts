import { createServer, type Server } from "node:http";
import { connect as tcpConnect } from "node:net";
import { parseArgs } from "node:util";
import { setTimeout as delay } from "node:timers/promises";
import { ConfigError, positiveNumber } from "../config.js";
import { CONNECT_SETTINGS } from "../settings/all-settings.js";
import { flagOptions } from "../settings/setting.js";
import { settingsHelp } from "../settings/settings-help.js";
import { consentFromEnv } from "../consent/consent-config.js";
import { createConsentFlow, type ConsentFlow } from "../consent/consent-flow.js";
import { routeHttp, type HttpRoute } from "../server/http-routes.js";
import { CLAIM_PATH, consentRoutes } from "../web/consent-routes.js";
import { renderDonePage } from "../web/done-page.js";
import { newNonce, renderPage, sendPage } from "../web/page.js";
import type { Command } from "./command.js";
import { describeTenant } from "./describe-connection.js";
import { checkEncryptionKeys, encryptionFromFlags, recordCliAction } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { identityFromEnv } from "./upstream-identity.js";
import { terminalSafe } from "./terminal-text.js";

const DONE_PATH = "/tokenbroker-connected";

/** `tokenbroker connect`: consent in a browser, from the terminal. */
export const connectCommand: Command = {
  name: "connect",
  summary: "connect Xero organisations: prints the URL to open, waits for the consent",
  help: `Usage: tokenbroker connect [options]

Connects Xero organisations: prints the URL to open in a browser, waits
while you sign in to Xero and choose the organisations, then prints the
connection and its tenants. The URL is a one-time link on the redirect URI's
host: the first browser to open it gets the consent (a cookie) and is sent
to Xero; only that browser can complete it.

Xero sends the browser back to TOKENBROKER_REDIRECT_URI (below), which must
be registered with your Xero app.
When tokenbroker serve is listening there (with the same database), it
completes the consent and this command waits for it; otherwise this command
listens on that address itself until the consent comes back.

Options:
  --timeout SECONDS  give up after this long (default 600, a consent's lifetime)
  -h, --help         show this help

${settingsHelp(CONNECT_SETTINGS)}
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: { timeout: { type: "string" }, ...flagOptions(CONNECT_SETTINGS) },
      allowPositionals: false,
    });
    const timeoutMs = 1000 * positiveNumber("--timeout", values.timeout, 600);
    const identity = identityFromEnv(io.env);
    const { redirectUri, scopes } = consentFromEnv(io.env);
    const redirect = new URL(redirectUri);
    const port = Number(redirect.port || (redirect.protocol === "https:" ? 443 : 80));
    const host = redirect.hostname.replace(/^\[(.*)\]$/, "$1");
    const encryption = encryptionFromFlags(values, io.env);
    const store = await openStoreOrExplain(dbPath(values.db, io.env), encryption.cipher);
    let listener: { server: Server; donePageServed: Promise<void> } | undefined;
    try {
      await checkEncryptionKeys(store, encryption.cipher);
      const flow = createConsentFlow({ store, identity, redirectUri, scopes });
      const served = await somethingListens(host, port);
      if (!served) {
        if (redirect.protocol === "https:") {
          throw new ConfigError(
            `nothing listens on ${redirect.host} for the https redirect URI; start tokenbroker serve behind its TLS proxy first`,
          );
        }
        listener = await listenForCallback(flow, host, port, redirect.pathname);
      }
      const started = await flow.beginWithLink();
      const link = new URL(`${CLAIM_PATH}?t=${started.linkSecret}`, redirect);
      io.out.write(`Open this URL in a browser, sign in to Xero and choose the organisations:\n\n  ${link.href}\n\n`);
      io.err.write(`The link works once, in the browser that opens it first, for ${Math.round(flow.stateTtlMs / 60_000)} minutes.\n`);
      io.err.write(
        `Waiting for Xero to send the browser back to ${redirectUri}${served ? " (served by the running tokenbroker, which must use this database)" : ""}…\n`,
      );
      const deadline = Date.now() + Math.min(timeoutMs, flow.stateTtlMs + 5000);
      for (;;) {
        const status = await flow.status(started.state);
        if (status?.status === "done" && status.connectionId !== undefined) {
          // The browser is being sent to our "return to the terminal" page: let it arrive before the listener closes.
          if (listener) await Promise.race([listener.donePageServed, delay(2000)]);
          const connection = (await store.connections.listConnections()).find((c) => c.connectionId === status.connectionId);
          const tenantIds = (connection?.tenants ?? [])
            .filter((t) => t.state === "active")
            .map((t) => t.tenantId)
            .sort();
          await recordCliAction(store, {
            action: "connect",
            connectionId: status.connectionId,
            detail: `tenants=${tenantIds.join(",")}`.slice(0, 1000),
          });
          io.out.write(`connection ${status.connectionId}  ${terminalSafe(connection?.userName ?? connection?.xeroUserId ?? "")}\n`);
          for (const t of connection?.tenants ?? []) io.out.write(`  ${describeTenant(t)}\n`);
          if (connection?.lastError) io.err.write(`tokenbroker connect: ${terminalSafe(connection.lastError)}\n`);
          return connection?.lastError ? 1 : 0;
        }
        if (status?.status === "failed") {
          io.err.write(`tokenbroker connect: the consent failed, nothing stored: ${status.error}\n`);
          return 1;
        }
        if (status === undefined || status.status === "expired" || Date.now() > deadline) {
          io.err.write("tokenbroker connect: no answer from Xero in time, nothing stored; run tokenbroker connect again\n");
          return 1;
        }
        await delay(200);
      }
    } finally {
      if (listener) await new Promise<void>((resolve) => listener!.server.close(() => resolve()).closeAllConnections());
      await store.close();
    }
  },
};

/** True when something accepts TCP connections on host:port (the running broker, presumably). */
function somethingListens(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port, timeout: 2000 });
    const done = (listening: boolean) => {
      socket.destroy();
      resolve(listening);
    };
    socket.once("connect", () => done(true));
    socket.once("timeout", () => done(false));
    socket.once("error", () => done(false));
  });
}

/** A temporary server for the redirect URI: completes the consent, then tells the browser to go back to the terminal. */
async function listenForCallback(
  flow: ConsentFlow,
  host: string,
  port: number,
  callbackPath: string,
): Promise<{ server: Server; donePageServed: Promise<void> }> {
  let served!: () => void;
  const donePageServed = new Promise<void>((resolve) => (served = resolve));
  const done: HttpRoute = {
    method: "GET",
    path: DONE_PATH,
    handle(_req, res) {
      const nonce = newNonce();
      res.once("finish", () => served());
      sendPage(res, 200, renderPage(renderDonePage(), nonce), nonce);
    },
  };
  const callback = consentRoutes({ consent: () => flow, callbackPath, donePath: DONE_PATH }).filter(
    (r) => r.path === callbackPath || r.path === CLAIM_PATH,
  );
  const server = createServer(routeHttp([...callback, done]));
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(new ConfigError(`cannot listen on ${host}:${port} for the redirect URI: ${e.code ?? e.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  return { server, donePageServed };
}
