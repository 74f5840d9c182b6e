import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { setTimeout as delay } from "node:timers/promises";
import { ConfigError } from "../config.js";
import { UPSTREAM_COMMAND_SETTINGS } from "../settings/all-settings.js";
import { flagOptions } from "../settings/setting.js";
import { settingsHelp } from "../settings/settings-help.js";
import { UnreadableTokenSetError } from "../store/token-set-store.js";
import { UpstreamError } from "../upstream/identity-server.js";
import type { Command } from "./command.js";
import { checkEncryptionKeys, encryptionFromFlags, recordCliAction } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { identityFromEnv } from "./upstream-identity.js";
import { terminalSafe } from "./terminal-text.js";

/** How long `revoke` waits for a refresh in flight elsewhere (its lease) before giving up, ms. */
const LEASE_WAIT_MS = 40_000;

/** `tokenbroker revoke <connection>`: revokes the grant at Xero and removes it. */
export const revokeCommand: Command = {
  name: "revoke",
  summary: "revoke a connection's grant at Xero and remove it with its tenants",
  help: `Usage: tokenbroker revoke [options] <connection id>

Revokes a connection's grant at Xero's revocation endpoint (which
disconnects all its tenants there) and removes the connection, its token
set and its tenants from the database. It first takes the connection's
refresh lease, so that no broker process refreshes it meanwhile. A
connection that needs re-authorisation is revoked and removed the same way.

Options:
  -h, --help   show this help

${settingsHelp(UPSTREAM_COMMAND_SETTINGS)}
`,
  async run(args, io) {
    const { values, positionals } = parseArgs({ args, options: flagOptions(UPSTREAM_COMMAND_SETTINGS), allowPositionals: true });
    if (positionals.length !== 1) throw new ConfigError("name exactly one connection id, e.g. tokenbroker revoke 5b0d…");
    const connectionId = positionals[0]!;
    const identity = identityFromEnv(io.env);
    const encryption = encryptionFromFlags(values, io.env);
    const store = await openStoreOrExplain(dbPath(values.db, io.env), encryption.cipher);
    try {
      await checkEncryptionKeys(store, encryption.cipher);
      const summary = (await store.connections.listConnections()).find((c) => c.connectionId === connectionId);
      if (!summary) throw new ConfigError(`connection ${connectionId} is not stored; see tokenbroker connections`);
      if (summary.custom) {
        // Its renewal credential is the app's client secret, which must never reach a revocation endpoint.
        throw new ConfigError(
          `connection ${connectionId} is a custom connection: it has no grant to revoke; ` +
            `forget it with tokenbroker custom remove, and disable the app at Xero`,
        );
      }
      // Hold the refresh lease: the refresh token read next stays the live one until it is revoked.
      const holder = `${hostname()}:${process.pid}:revoke`;
      const deadline = Date.now() + LEASE_WAIT_MS;
      for (;;) {
        const lease = await store.tokens.tryAcquireLease(connectionId, holder, LEASE_WAIT_MS);
        if (lease.acquired) break;
        if (Date.now() > deadline) {
          io.err.write(`tokenbroker revoke: connection ${connectionId} is being refreshed by ${lease.holder}; try again\n`);
          return 1;
        }
        await delay(100);
      }
      const record = await store.tokens.getToken(connectionId).catch(async (e: unknown) => {
        await store.tokens.releaseLease(connectionId, holder);
        throw e;
      });
      if (!record) throw new ConfigError(`connection ${connectionId} is not stored; see tokenbroker connections`);
      try {
        await identity.revoke(record.refreshToken);
      } catch (e) {
        await store.tokens.releaseLease(connectionId, holder);
        if (e instanceof UpstreamError) {
          io.err.write(`tokenbroker revoke: Xero could not be asked, nothing removed: ${e.message}\n`);
          return 1;
        }
        throw e;
      }
      await store.connections.removeConnection(connectionId);
      await recordCliAction(store, { action: "revoke", connectionId });
      const tenants = summary.tenants.filter((t) => t.state === "active");
      const who = terminalSafe(summary.userName ?? summary.xeroUserId ?? "");
      io.out.write(
        `connection ${connectionId}  ${who}  revoked at Xero; removed with ${tenants.length} tenant${tenants.length === 1 ? "" : "s"}\n`,
      );
      for (const t of tenants) io.out.write(`  ${terminalSafe(`tenant ${t.tenantId}  ${t.tenantName ?? ""}`)}\n`);
      return 0;
    } catch (e) {
      if (!(e instanceof UnreadableTokenSetError)) throw e;
      io.err.write(`tokenbroker revoke: ${e.message}; nothing revoked\n`);
      return 1;
    } finally {
      await store.close();
    }
  },
};
