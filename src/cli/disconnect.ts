import { parseArgs } from "node:util";
import { TokenBroker } from "../broker/token-broker.js";
import { ConfigError } from "../config.js";
import { UPSTREAM_COMMAND_SETTINGS } from "../settings/all-settings.js";
import { flagOptions } from "../settings/setting.js";
import { settingsHelp } from "../settings/settings-help.js";
import { isBrokerError } from "../errors.js";
import { UpstreamError } from "../upstream/identity-server.js";
import type { Command } from "./command.js";
import { checkEncryptionKeys, encryptionFromFlags, recordCliAction } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { identityFromEnv } from "./upstream-identity.js";
import { terminalSafe } from "./terminal-text.js";

/** `tokenbroker disconnect <tenant>`: removes one tenant at Xero and locally. */
export const disconnectCommand: Command = {
  name: "disconnect",
  summary: "disconnect one tenant at Xero (DELETE /connections/{id}) and remove it",
  help: `Usage: tokenbroker disconnect [options] <tenant id>

Disconnects one tenant (organisation) from its connection's grant at Xero
(DELETE /connections/{id}, with a valid access token of that connection,
refreshed first if needed) and removes it from the database. The
connection and its other tenants stay. A tenant Xero no longer lists (state
gone) is only removed locally.

Options:
  --connection ID  the connection to disconnect it from, when two users' grants reach the tenant
  -h, --help       show this help

${settingsHelp(UPSTREAM_COMMAND_SETTINGS)}
`,
  async run(args, io) {
    const { values, positionals } = parseArgs({
      args,
      options: { connection: { type: "string" }, ...flagOptions(UPSTREAM_COMMAND_SETTINGS) },
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new ConfigError("name exactly one tenant id, e.g. tokenbroker disconnect 9a8b…");
    const tenantId = positionals[0]!;
    const identity = identityFromEnv(io.env);
    const encryption = encryptionFromFlags(values, io.env);
    const store = await openStoreOrExplain(dbPath(values.db, io.env), encryption.cipher);
    try {
      await checkEncryptionKeys(store, encryption.cipher);
      const holders = (await store.connections.listConnections())
        .filter((c) => values.connection === undefined || c.connectionId === values.connection)
        .flatMap((c) => c.tenants.filter((t) => t.tenantId === tenantId).map((t) => ({ c, t })));
      if (holders.length === 0) {
        throw new ConfigError(
          `tenant ${tenantId} is not stored${values.connection ? ` in connection ${values.connection}` : ""}; see tokenbroker tenants`,
        );
      }
      if (holders.length > 1) {
        throw new ConfigError(
          `tenant ${tenantId} is reachable through ${holders.length} connections (${holders.map((h) => h.c.connectionId).join(", ")}); choose one with --connection`,
        );
      }
      const { c, t } = holders[0]!;
      let atXero = "Xero no longer listed it";
      if (t.state === "active") {
        if (t.xeroConnectionId === undefined)
          throw new ConfigError(`tenant ${tenantId} has no Xero connection id; re-authorise the connection first`);
        const broker = new TokenBroker({ store, identity });
        try {
          const token = await broker.getToken({ connectionId: c.connectionId });
          const deleted = await identity.deleteConnection(token.accessToken, t.xeroConnectionId);
          atXero = deleted ? "disconnected at Xero" : "Xero did not know it any more";
        } catch (e) {
          if (isBrokerError(e, "needs_reauthorization")) {
            io.err.write(
              `tokenbroker disconnect: connection ${c.connectionId} needs re-authorisation, so Xero cannot be asked; nothing removed (re-authorise it, or remove the whole grant with tokenbroker revoke)\n`,
            );
            return 1;
          }
          if (isBrokerError(e) || e instanceof UpstreamError) {
            io.err.write(`tokenbroker disconnect: Xero could not be asked, nothing removed: ${e.message}\n`);
            return 1;
          }
          throw e;
        } finally {
          await broker.close();
        }
      }
      await store.connections.removeTenant(c.connectionId, tenantId);
      await recordCliAction(store, { action: "disconnect", tenantId, connectionId: c.connectionId, detail: atXero });
      io.out.write(`${terminalSafe(`tenant ${tenantId}  ${t.tenantName ?? ""}  ${atXero}; removed from connection ${c.connectionId}`)}\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
};
