import Database from "better-sqlite3";

/**
 * The database file opened with the driver itself, as an operator with the
 * `sqlite3` shell would: for tests that check what is on disk, or change it
 * behind the store's back. The store gives out no handle; close this one.
 */
export function openRawDatabase(path: string): Database.Database {
  const db = new Database(path);
  db.pragma("busy_timeout = 5000");
  return db;
}

/** Runs `body` on the file opened with the driver, then closes it. */
export function withRawDatabase<T>(path: string, body: (db: Database.Database) => T): T {
  const db = openRawDatabase(path);
  try {
    return body(db);
  } finally {
    db.close();
  }
}
