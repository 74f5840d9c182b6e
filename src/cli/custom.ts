import { parseArgs } from "node:util";
import { ConfigError, issuerFromEnv } from "../config.js";
import { addCustomConnection } from "../custom/add-custom-connection.js";
import { CUSTOM_COMMAND_SETTINGS } from "../settings/all-settings.js";
import { flagOptions } from "../settings/setting.js";
import { settingsHelp } from "../settings/settings-help.js";
import type { ConnectionSummary } from "../store/connection-store.js";
import { UpstreamError } from "../upstream/identity-server.js";
import { createOidcIdentityServer } from "../upstream/oidc-identity-server.js";
import type { Command, CommandIo } from "./command.js";
import { describeTenant } from "./describe-connection.js";
import { readSecret } from "./read-secret.js";
import { checkEncryptionKeys, encryptionFromFlags, recordCliAction } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { terminalJson, terminalSafe } from "./terminal-text.js";

/** Longest name or client id accepted. */
const MAX_FIELD_LENGTH = 200;

/** `tokenbroker custom`: Xero custom connections (the client credentials grant). */
export const customCommand: Command = {
  name: "custom",
  summary: "add, list or remove Xero custom connections (client credentials)",
  help: `Usage: tokenbroker custom add --name NAME --client-id ID [options] < client-secret.txt
       tokenbroker custom list [--json]
       tokenbroker custom remove NAME

A Xero custom connection is an app of its own for one organisation, renewed
with the client_credentials grant: no user, no consent, no refresh token.
tokenbroker keeps its access token fresh like any other connection's: one
token request per expiry, however many channels ask.

  add      reads the app's client secret from standard input (never from the
           command line, where other users could see it; typed at a
           terminal, it is not echoed), obtains a token with it, reads Xero's
           connections endpoint to learn the organisation, and stores the
           connection with the secret encrypted. Adding a name that exists
           replaces it: after the secret was rotated at Xero, run add again
           with the new secret.
  list     lists the custom connections (name, client id, state,
           organisations); never a secret.
  remove   forgets the custom connection NAME and its token.

Options:
  --name NAME        (add) the name to know it by
  --client-id ID     (add) the custom connection app's client id
  --json             print the result as JSON
  -h, --help         show this help

${settingsHelp(CUSTOM_COMMAND_SETTINGS)}
`,
  async run(args, io) {
    const [action, ...rest] = args;
    if (action === "add") return add(rest, io);
    if (action === "list") return list(rest, io);
    if (action === "remove") return remove(rest, io);
    throw new ConfigError(`custom: say add, list or remove (see tokenbroker custom --help)`);
  },
};

async function add(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: "string" },
      "client-id": { type: "string" },
      json: { type: "boolean" },
      ...flagOptions(CUSTOM_COMMAND_SETTINGS),
    },
    allowPositionals: false,
  });
  const name = field("--name", values.name);
  const clientId = field("--client-id", values["client-id"]);
  if (/\s/.test(clientId)) throw new ConfigError("--client-id holds white space: give the app's client id alone");
  const issuer = issuerFromEnv(io.env);
  const encryption = encryptionFromFlags(values, io.env);
  const clientSecret = await readSecret(io, "client secret", `tokenbroker custom add --name ${name} --client-id ${clientId} < secret.txt`);
  const store = await openStoreOrExplain(dbPath(values.db, io.env), encryption.cipher);
  try {
    await checkEncryptionKeys(store, encryption.cipher);
    const identity = createOidcIdentityServer({
      issuer: issuer.issuer,
      connectionsUrl: issuer.connectionsUrl,
      clientId,
      clientSecret,
      allowInsecure: issuer.allowInsecureIssuer,
      timeoutMs: issuer.timeoutMs,
    });
    let added: Awaited<ReturnType<typeof addCustomConnection>>;
    try {
      added = await addCustomConnection(store, identity, { name, clientId, clientSecret });
    } catch (e) {
      if (e instanceof UpstreamError) throw new ConfigError(`custom add failed, nothing stored: ${e.message}`);
      throw e;
    }
    await recordCliAction(store, {
      action: "custom add",
      connectionId: added.connectionId,
      detail: `${added.created ? "new" : "replaced"} custom connection ${name}`,
    });
    if (values.json) {
      io.out.write(`${terminalJson({ name, clientId, ...added })}\n`);
    } else {
      io.out.write(
        `${terminalSafe(`custom connection ${name}: connection ${added.connectionId} (${added.created ? "new" : "replaced"})`)}\n`,
      );
      for (const t of added.tenants) io.out.write(`  ${terminalSafe(`tenant ${t.tenantId}  ${t.tenantName ?? ""}`)}\n`);
      for (const t of added.gone) io.out.write(`  ${terminalSafe(`tenant ${t.tenantId}  ${t.tenantName ?? ""}  (gone)`)}\n`);
    }
    if (added.tenants.length === 0) {
      io.err.write("tokenbroker: Xero lists no organisation for this custom connection; GetToken by connection_id works meanwhile\n");
    }
    return 0;
  } finally {
    await store.close();
  }
}

async function list(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({ args, options: { db: { type: "string" }, json: { type: "boolean" } }, allowPositionals: false });
  const store = await openStoreOrExplain(dbPath(values.db, io.env));
  try {
    const customs = (await store.connections.listConnections()).filter((c) => c.custom !== undefined);
    if (values.json) {
      io.out.write(`${terminalJson(customs.map(customJson))}\n`);
    } else if (customs.length === 0) {
      io.out.write("no custom connections: run tokenbroker custom add\n");
    } else {
      io.out.write(`${customs.map(describeCustom).join("\n\n")}\n`);
    }
    return 0;
  } finally {
    await store.close();
  }
}

async function remove(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { db: { type: "string" } }, allowPositionals: true });
  if (positionals.length !== 1) throw new ConfigError("custom remove: give the name of one custom connection");
  const name = positionals[0]!;
  const store = await openStoreOrExplain(dbPath(values.db, io.env));
  try {
    const found = (await store.connections.listConnections()).find((c) => c.custom?.name === name);
    if (!found) {
      io.err.write(`tokenbroker: no custom connection named ${terminalSafe(JSON.stringify(name))} (see tokenbroker custom list)\n`);
      return 1;
    }
    await store.connections.removeConnection(found.connectionId);
    await recordCliAction(store, { action: "custom remove", connectionId: found.connectionId, detail: `custom connection ${name}` });
    io.out.write(`${terminalSafe(`custom connection ${name}: connection ${found.connectionId} removed`)}\n`);
    return 0;
  } finally {
    await store.close();
  }
}

/** A required text option, checked: present, not empty, not too long. */
function field(flag: string, value: string | undefined): string {
  const text = value?.trim() ?? "";
  if (text === "") throw new ConfigError(`custom add needs ${flag}`);
  if (text.length > MAX_FIELD_LENGTH) throw new ConfigError(`${flag} is longer than ${MAX_FIELD_LENGTH} characters`);
  return text;
}

/** A custom connection as `custom list` prints it: no secret. */
function describeCustom(c: ConnectionSummary): string {
  const lines = [
    `${c.custom!.name}  ${c.state === "active" ? "active" : "NEEDS RE-AUTHORISATION"}  connection ${c.connectionId}`,
    `  client id      ${c.custom!.clientId}`,
    `  last error     ${c.lastError ?? "none"}`,
  ].map(terminalSafe);
  return [...lines, ...c.tenants.map((t) => `  ${describeTenant(t)}`)].join("\n");
}

function customJson(c: ConnectionSummary): Record<string, unknown> {
  return {
    name: c.custom!.name,
    clientId: c.custom!.clientId,
    connectionId: c.connectionId,
    state: c.state,
    lastError: c.lastError ?? null,
    tenants: c.tenants.map((t) => ({ tenantId: t.tenantId, tenantName: t.tenantName ?? null, state: t.state })),
  };
}
