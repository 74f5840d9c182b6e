import { openSqliteStore } from "./sqlite-store.js";
import type { Store, StoreOptions } from "./store.js";

/**
 * Opens (creating and migrating if needed) the store at `location`: today the
 * path of a SQLite database file (see `openSqliteStore`). Async, as opening a
 * networked store is.
 */
export async function openStore(location: string, options: StoreOptions = {}): Promise<Store> {
  return openSqliteStore({ ...options, path: location });
}
