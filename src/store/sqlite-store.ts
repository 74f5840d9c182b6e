import { createSqliteApiKeys } from "./sqlite-api-keys.js";
import { createSqliteAuditLog } from "./sqlite-audit-log.js";
import { SqliteConnections } from "./sqlite-connections.js";
import { SqliteConsents } from "./sqlite-consents.js";
import { SqliteDatabase, type SqliteStoreOptions } from "./sqlite-database.js";
import { createSqliteQuota } from "./sqlite-quota.js";
import { SqliteTokenSets } from "./sqlite-token-sets.js";
import type { Store } from "./store.js";

export type { SqliteStoreOptions } from "./sqlite-database.js";

/**
 * Opens (creating and migrating if needed) a {@link Store} in one SQLite
 * database file: every part on one connection, in WAL mode with
 * `synchronous=FULL` (a committed token set survives a crash or a power cut).
 * Several processes may share the file; refresh leases in the database keep
 * them from refreshing one token set twice.
 *
 * The database is created with mode 0600 whatever the umask (SQLite gives its
 * WAL and shared-memory files the same mode); an existing one that group or
 * others can read is made 0600, with a warning in the log.
 */
export function openSqliteStore(options: SqliteStoreOptions): Store {
  const sqlite = new SqliteDatabase(options);
  return {
    tokens: new SqliteTokenSets(sqlite),
    connections: new SqliteConnections(sqlite),
    consents: new SqliteConsents(sqlite),
    apiKeys: createSqliteApiKeys(sqlite),
    auditLog: createSqliteAuditLog(sqlite),
    quota: createSqliteQuota(sqlite),
    async ping() {
      sqlite.ping();
    },
    backup: (path) => sqlite.backup(path),
    async close() {
      sqlite.close();
    },
  };
}
