import { openPostgresStore } from "./postgres-store.js";
import { openSqliteStore } from "./sqlite-store.js";
import { isPostgresUrl } from "./store-location.js";
import type { Store, StoreOptions } from "./store.js";

/**
 * Opens (creating and migrating if needed) the store at `location`: a
 * `postgres://` or `postgresql://` URL opens the PostgreSQL store (see
 * `openPostgresStore`), anything else is the path of a SQLite database file
 * (see `openSqliteStore`). Errors never show a password of the URL.
 */
export async function openStore(location: string, options: StoreOptions = {}): Promise<Store> {
  if (isPostgresUrl(location)) return openPostgresStore({ ...options, url: location });
  return openSqliteStore({ ...options, path: location });
}
