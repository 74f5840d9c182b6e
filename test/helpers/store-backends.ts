import { join } from "node:path";
import pg from "pg";
import { afterAll } from "vitest";
import { tempDir } from "./broker-fixture.js";
import { withRawDatabase } from "./raw-database.js";
import { missingPostgres, startPostgres, type PostgresServer } from "./postgres-server.js";

/** A database engine the store runs on, as a test file sees it. */
export interface StoreBackend {
  /** "SQLite" or "PostgreSQL", for test names. */
  readonly name: "SQLite" | "PostgreSQL";
  /** Why this backend's tests are skipped here (PostgreSQL not installed), or undefined. */
  readonly skip: string | undefined;
  /** A new, empty store location as `--db` and `openStore` take it: a file path, or a `postgres://` URL of a fresh database. */
  location(): Promise<string>;
  /** Runs `sql` on the database at `location` behind the store's back (a test's own connection). */
  exec(location: string, sql: string): Promise<void>;
}

let postgres: Promise<PostgresServer> | undefined;
let registered = false;

/**
 * The PostgreSQL server of this test file (started at its first use, stopped
 * after the file's tests). Call it at the top level of a test file, or
 * through {@link useStoreBackends}.
 */
export function usePostgres(): () => Promise<PostgresServer> {
  if (!registered) {
    registered = true;
    afterAll(async () => {
      const server = await postgres?.catch(() => undefined);
      postgres = undefined;
      server?.destroy();
    });
  }
  return () => (postgres ??= startPostgres());
}

/**
 * The backends a store test runs on: SQLite always, PostgreSQL when it is
 * installed (else skipped with one visible line; required in CI). Call at the
 * top level of a test file, then `describe.each(backends)` with
 * `describe.skipIf(backend.skip)`, and `await backend.location()` for each test's store.
 */
export function useStoreBackends(): StoreBackend[] {
  const dirs: Array<ReturnType<typeof tempDir>> = [];
  afterAll(() => {
    for (const d of dirs.splice(0)) d.cleanup();
  });
  const server = usePostgres();
  return [
    {
      name: "SQLite",
      skip: undefined,
      async location() {
        const dir = tempDir();
        dirs.push(dir);
        return join(dir.path, "tokenbroker.db");
      },
      async exec(location, sql) {
        withRawDatabase(location, (db) => db.exec(sql));
      },
    },
    {
      name: "PostgreSQL",
      skip: missingPostgres(),
      location: async () => (await server()).createDatabase(),
      async exec(location, sql) {
        const client = new pg.Client({ connectionString: location });
        await client.connect();
        try {
          await client.query(sql);
        } finally {
          await client.end();
        }
      },
    },
  ];
}
