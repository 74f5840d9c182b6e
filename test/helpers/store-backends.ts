import { join } from "node:path";
import { afterAll } from "vitest";
import { tempDir } from "./broker-fixture.js";
import { missingPostgres, startPostgres, type PostgresServer } from "./postgres-server.js";

/** A database engine the store runs on, as a test file sees it. */
export interface StoreBackend {
  /** "SQLite" or "PostgreSQL", for test names. */
  readonly name: "SQLite" | "PostgreSQL";
  /** Why this backend's tests are skipped here (PostgreSQL not installed), or undefined. */
  readonly skip: string | undefined;
  /** A new, empty store location as `--db` and `openStore` take it: a file path, or a `postgres://` URL of a fresh database. */
  location(): Promise<string>;
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
    },
    {
      name: "PostgreSQL",
      skip: missingPostgres(),
      location: async () => (await server()).createDatabase(),
    },
  ];
}
