import { parseArgs } from "node:util";
import { generateApiKey, hashApiKey, isValidKeyName, parseTenantScope } from "../auth/api-key.js";
import { ConfigError } from "../config.js";
import { DuplicateKeyNameError } from "../store/api-key-store.js";
import type { Command, CommandIo } from "./command.js";
import { recordCliAction } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { DB } from "../settings/server-settings.js";
import { settingsHelp } from "../settings/settings-help.js";

/** `tokenbroker keys`: create, list and revoke the API keys channels use. */
export const keysCommand: Command = {
  name: "keys",
  summary: "create, list and revoke client API keys",
  help: `Usage: tokenbroker keys create --name NAME --tenants ID,ID,…|'*' [--admin]
       tokenbroker keys list [--json]
       tokenbroker keys revoke NAME

Client API keys: a channel sends its key as \`authorization: Bearer <key>\`
(gRPC metadata or an HTTP header) and gets tokens only for the tenants in the
key's scope, or for every tenant with '*'. A connection is in scope when all
its tenants are. Admin keys (--admin) also open the status page and /connect.

create prints the new key once, on standard output: store it now, only its
SHA-256 is kept. revoke takes effect in running brokers within a second: new
calls are refused, and the key's open WatchToken streams are closed
(UNAUTHENTICATED) without receiving another token.
These commands work on the database file directly (they need file access,
not a key).

Options:
  --name NAME       the key's name (letters, digits, . _ -), shown in the audit log
  --tenants LIST    tenant ids the key may name, comma-separated, or '*' for all
  --admin           the key may also use the admin pages
  --json            (list) print JSON
  -h, --help        show this help

${settingsHelp([DB])}
`,
  async run(args, io) {
    const { values, positionals } = parseArgs({
      args,
      options: {
        name: { type: "string" },
        tenants: { type: "string" },
        admin: { type: "boolean" },
        json: { type: "boolean" },
        db: { type: "string" },
      },
      allowPositionals: true,
    });
    const [action, ...rest] = positionals;
    if (action !== "create" && action !== "list" && action !== "revoke") {
      throw new ConfigError("say what to do: tokenbroker keys create|list|revoke (see --help)");
    }
    if (action === "create") {
      if (rest.length > 0) throw new ConfigError("keys create takes no positional arguments; use --name and --tenants");
      return create(values, io);
    }
    if (action === "list") return list(values, io);
    if (rest.length !== 1) throw new ConfigError("name the key to revoke: tokenbroker keys revoke NAME");
    return revoke(rest[0]!, values, io);
  },
};

type Values = {
  name?: string | undefined;
  tenants?: string | undefined;
  admin?: boolean | undefined;
  json?: boolean | undefined;
  db?: string | undefined;
};

async function create(values: Values, io: CommandIo): Promise<number> {
  const name = values.name;
  if (name === undefined || !isValidKeyName(name)) {
    throw new ConfigError("--name is required: 1-64 letters, digits, '.', '_' or '-'");
  }
  const tenants = values.tenants === undefined ? undefined : parseTenantScope(values.tenants);
  if (tenants === undefined) throw new ConfigError("--tenants is required: tenant ids separated by commas, or '*' for every tenant");
  const role = values.admin ? "admin" : "client";
  const store = await openStoreOrExplain(dbPath(values.db, io.env));
  try {
    const key = generateApiKey();
    try {
      await store.apiKeys.create({ name, keyHash: hashApiKey(key), tenants, role, createdAt: Date.now() });
    } catch (e) {
      if (e instanceof DuplicateKeyNameError) throw new ConfigError(e.message);
      throw e;
    }
    await recordCliAction(store, {
      action: "keys_create",
      detail: `key=${name} tenants=${tenants === "*" ? "*" : tenants.join(",")} role=${role}`,
    });
    io.out.write(`${key}\n`);
    io.err.write(
      `key ${name} created (${role}, tenants ${tenants === "*" ? "*" : tenants.join(",")}); it is shown only now: store it safely\n`,
    );
    return 0;
  } finally {
    await store.close();
  }
}

async function list(values: Values, io: CommandIo): Promise<number> {
  const store = await openStoreOrExplain(dbPath(values.db, io.env));
  try {
    const keys = await store.apiKeys.list();
    const rows = keys.map((k) => ({
      name: k.name,
      role: k.role,
      tenants: k.tenants === "*" ? "*" : k.tenants.join(","),
      created: new Date(k.createdAt).toISOString(),
      lastUsed: k.lastUsedAt === undefined ? "never" : new Date(k.lastUsedAt).toISOString(),
      status: k.revokedAt === undefined ? "active" : `revoked ${new Date(k.revokedAt).toISOString()}`,
    }));
    if (values.json) {
      io.out.write(`${JSON.stringify(rows, null, 2)}\n`);
      return 0;
    }
    const header = { name: "NAME", role: "ROLE", tenants: "TENANTS", created: "CREATED", lastUsed: "LAST USED", status: "STATUS" };
    const columns = Object.keys(header) as Array<keyof typeof header>;
    const width = Object.fromEntries(columns.map((c) => [c, Math.max(header[c].length, ...rows.map((r) => r[c].length))]));
    for (const row of [header, ...rows]) {
      io.out.write(
        `${columns
          .map((c) => row[c].padEnd(width[c]!))
          .join("  ")
          .trimEnd()}\n`,
      );
    }
    return 0;
  } finally {
    await store.close();
  }
}

async function revoke(name: string, values: Values, io: CommandIo): Promise<number> {
  const store = await openStoreOrExplain(dbPath(values.db, io.env));
  try {
    if (!(await store.apiKeys.revoke(name, Date.now()))) {
      throw new ConfigError(`no active key named ${JSON.stringify(name)}; see tokenbroker keys list`);
    }
    await recordCliAction(store, { action: "keys_revoke", detail: `key=${name}` });
    io.out.write(`key ${name} revoked\n`);
    return 0;
  } finally {
    await store.close();
  }
}
