import { parseArgs } from "node:util";
import { ConfigError, upstreamFromEnv } from "../config.js";
import { UPSTREAM_COMMAND_SETTINGS } from "../settings/all-settings.js";
import { flagOptions } from "../settings/setting.js";
import { settingsHelp } from "../settings/settings-help.js";
import { type ImportResult, importRefreshToken } from "../importer.js";
import { UpstreamError } from "../upstream/identity-server.js";
import { identityFromConfig } from "./upstream-identity.js";
import type { Command, CommandIo } from "./command.js";
import { checkEncryptionKeys, encryptionFromFlags, recordCliAction } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { terminalJson, terminalSafe } from "./terminal-text.js";

/** `tokenbroker import`: take over a token set from another system. */
export const importCommand: Command = {
  name: "import",
  summary: "take over an existing refresh token (read from standard input)",
  help: `Usage: tokenbroker import [options] < refresh-token.txt

Moves a Xero token set from an existing system into tokenbroker. Reads the
refresh token from standard input (never from the command line, where other
users could see it), refreshes it once right away so that tokenbroker alone
holds the live refresh token, reads the grant's tenants from Xero's
connections endpoint, stores both, and prints the connection id and tenants.
Stop the old system from refreshing first: after the import its refresh token
is spent.

Importing a token of a Xero user tokenbroker already holds replaces that
user's token set (this is how a connection that needs re-authorisation is
brought back).

Options:
  --json       print the result as JSON
  -h, --help   show this help

${settingsHelp(UPSTREAM_COMMAND_SETTINGS)}
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: { json: { type: "boolean" }, ...flagOptions(UPSTREAM_COMMAND_SETTINGS) },
      allowPositionals: false,
    });
    const upstream = upstreamFromEnv(io.env);
    const encryption = encryptionFromFlags(values, io.env);
    const refreshToken = await readRefreshToken(io);
    const store = await openStoreOrExplain(dbPath(values.db, io.env), encryption.cipher);
    try {
      await checkEncryptionKeys(store, encryption.cipher);
      const identity = identityFromConfig(upstream);
      let result: ImportResult;
      try {
        result = await importRefreshToken(store, identity, refreshToken);
      } catch (e) {
        if (e instanceof UpstreamError) throw new ConfigError(`import failed, nothing stored: ${e.message}`);
        throw e;
      }
      await recordCliAction(store, { action: "import", connectionId: result.connectionId, detail: result.created ? "new" : "replaced" });
      if (values.json) {
        io.out.write(`${terminalJson(result)}\n`);
      } else {
        io.out.write(`connection ${result.connectionId} (${result.created ? "new" : "replaced"})\n`);
        for (const t of result.tenants) io.out.write(`  ${terminalSafe(`tenant ${t.tenantId}  ${t.tenantName ?? ""}`)}\n`);
      }
      if (result.tenantsError) {
        io.err.write(
          `tokenbroker: the token set is stored, but its tenants could not be read (${result.tenantsError}); ` +
            `GetToken by connection_id works meanwhile\n`,
        );
        return 1;
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};

async function readRefreshToken(io: CommandIo): Promise<string> {
  if (io.in.isTTY) io.err.write("Paste the refresh token, then press Enter and Ctrl-D:\n");
  let text = "";
  for await (const chunk of io.in) {
    text += typeof chunk === "string" ? chunk : (chunk as Buffer).toString("utf8");
    if (text.length > 16_384) throw new ConfigError("standard input is too long for a refresh token");
  }
  const token = text.trim();
  if (token === "") throw new ConfigError("no refresh token on standard input: pipe it in, e.g. tokenbroker import < token.txt");
  if (/\s/.test(token)) throw new ConfigError("standard input holds more than one word; give the refresh token alone");
  return token;
}
