import { createPostgresApiKeys } from "./postgres-api-keys.js";
import { createPostgresAuditLog } from "./postgres-audit-log.js";
import { PostgresConnections } from "./postgres-connections.js";
import { PostgresConsents } from "./postgres-consents.js";
import { PostgresDatabase, type PostgresStoreOptions } from "./postgres-database.js";
import { createPostgresQuota } from "./postgres-quota.js";
import { PostgresTokenSets } from "./postgres-token-sets.js";
import { postgresBackupAdvice } from "./store-location.js";
import type { Store, StoreChange } from "./store.js";

export type { PostgresStoreOptions } from "./postgres-database.js";

/**
 * Opens (creating and migrating if needed) a {@link Store} in a PostgreSQL
 * database, which several brokers on several hosts may share: refresh leases
 * with fencing numbers keep them to one refresh per expiry, and every commit
 * is heard by every broker at once (LISTEN/NOTIFY), which empties its read
 * cache of what changed and pushes it to its watchers ({@link Store.changes}).
 * Token sets are sealed as in SQLite. Errors never show the URL's password.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const db = await PostgresDatabase.open(options);
  try {
    const apiKeys = await createPostgresApiKeys(db);
    return {
      tokens: new PostgresTokenSets(db),
      connections: new PostgresConnections(db),
      consents: new PostgresConsents(db),
      apiKeys,
      auditLog: createPostgresAuditLog(db),
      quota: createPostgresQuota(db),
      changes: {
        subscribe(listener: (change: StoreChange) => void) {
          return db.onChange((change) => {
            if (change.kind === "everything") listener({ everything: true });
            else if (change.kind !== "keys") listener({ connectionId: change.connectionId, version: change.version });
          });
        },
      },
      ping: () => db.ping(),
      async backup() {
        throw new Error(postgresBackupAdvice(options.url));
      },
      close: () => db.close(),
    };
  } catch (e) {
    await db.close();
    throw db.safeError(e);
  }
}
