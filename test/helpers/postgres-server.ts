import { randomBytes } from "node:crypto";
import { POSTGRES_PACKAGE, POSTGRES_PROBE } from "../../bench/support/postgres-server.js";
import { missingSystemPackage } from "./system-requirement.js";

export { startPostgres, type PostgresServer } from "../../bench/support/postgres-server.js";

/**
 * Why the PostgreSQL tests cannot run here, or undefined when they can: on a
 * developer's machine without Debian's `postgresql-15` this prints one
 * SKIPPED line (for `describe.skipIf`); where `CI` is set it throws.
 */
export function missingPostgres(): string | undefined {
  return missingSystemPackage(POSTGRES_PACKAGE.what, POSTGRES_PACKAGE.install, POSTGRES_PROBE);
}

/**
 * `url` with a random password put in (the test server trusts loopback, so
 * any password is let in): for checking that no output, log or error shows it.
 */
export function withPassword(url: string): { url: string; password: string } {
  const password = `pw-${randomBytes(8).toString("hex")}`;
  return { url: url.replace("postgres@", `postgres:${password}@`), password };
}
