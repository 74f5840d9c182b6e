import { createAuditLog, type AuditEntry, type AuditLog } from "../../src/audit/audit-log.js";
import type { ApiKeyStore } from "../../src/auth/api-key-store.js";
import { generateApiKey, hashApiKey } from "../../src/auth/api-key.js";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import { createSqliteApiKeys, type SqliteApiKeys } from "../../src/store/sqlite-api-keys.js";
import { createSqliteAuditSink, readAuditLog } from "../../src/store/sqlite-audit-log.js";
import { startBroker, type BrokerFixture, type BrokerFixtureOptions } from "./broker-fixture.js";

/** A broker fixture with API keys required and an audit log. */
export interface SecureBrokerFixture extends BrokerFixture {
  keys: SqliteApiKeys;
  audit: AuditLog;
  /** Creates a key and returns it (the only time it is seen). */
  createKey(name: string, tenants: "*" | string[], options?: { admin?: boolean }): string;
  /** The audit entries written so far (flushes first). */
  auditEntries(): Promise<AuditEntry[]>;
}

/**
 * `startBroker` with `auth` and `audit` on, as `tokenbroker serve` runs it:
 * keys live in the fixture's database (`api_keys`), audit entries in its
 * `audit_log`. The server is built before the store exists, so the key store
 * and the audit sink reach the database lazily.
 */
export async function startSecureBroker(
  options: BrokerFixtureOptions & { cacheTtlMs?: number; revocationCheckMs?: number } = {},
): Promise<SecureBrokerFixture> {
  let keys: SqliteApiKeys | undefined;
  let fixture: BrokerFixture | undefined;
  const lazyKeys: ApiKeyStore = {
    findActive: (hash) => keys!.findActive(hash),
    isActive: (hash) => keys!.isActive(hash),
    markUsed: (hash, at) => keys!.markUsed(hash, at),
  };
  const audit = createAuditLog({
    sink: { write: (entries) => createSqliteAuditSink(fixture!.store.database).write(entries) },
    flushMs: 20,
  });
  fixture = await startBroker({
    ...options,
    server: {
      auth: {
        authenticator: createAuthenticator({ keys: lazyKeys, ...(options.cacheTtlMs === undefined ? {} : { cacheTtlMs: options.cacheTtlMs }) }),
        ...(options.revocationCheckMs === undefined ? {} : { revocationCheckMs: options.revocationCheckMs }),
      },
      audit,
      ...options.server,
    },
  });
  const f = fixture;
  keys = createSqliteApiKeys(f.store.database);
  const k = keys;
  return {
    ...f,
    keys: k,
    audit,
    createKey(name, tenants, opts = {}) {
      const key = generateApiKey();
      k.create({ name, keyHash: hashApiKey(key), tenants, role: opts.admin ? "admin" : "client", createdAt: Date.now() });
      return key;
    },
    async auditEntries() {
      await audit.flush();
      return readAuditLog(f.store.database, { limit: 10_000 });
    },
    async close() {
      await f.server.close();
      await audit.close();
      await f.close();
    },
  };
}

/** Call options that send `key` as a bearer token. */
export function withKey(key: string): { headers: { authorization: string } } {
  return { headers: { authorization: `Bearer ${key}` } };
}
