import { createAuditLog, type AuditEntry, type AuditLog } from "../../src/audit/audit-log.js";
import { generateApiKey, hashApiKey } from "../../src/auth/api-key.js";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import type { ApiKeyStore } from "../../src/store/api-key-store.js";
import { startBroker, type BrokerFixture, type BrokerFixtureOptions } from "./broker-fixture.js";

/** A broker fixture with API keys required and an audit log. */
export interface SecureBrokerFixture extends BrokerFixture {
  keys: ApiKeyStore;
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
  let fixture: BrokerFixture | undefined;
  const lazyKeys: Pick<ApiKeyStore, "findActive" | "isActive" | "markUsed"> = {
    findActive: (hash) => fixture!.store.apiKeys.findActive(hash),
    isActive: (hash) => fixture!.store.apiKeys.isActive(hash),
    markUsed: (hash, at) => fixture!.store.apiKeys.markUsed(hash, at),
  };
  const audit = createAuditLog({
    sink: { write: (entries) => fixture!.store.auditLog.write(entries) },
    flushMs: 20,
  });
  fixture = await startBroker({
    ...options,
    server: {
      auth: {
        authenticator: createAuthenticator({
          keys: lazyKeys,
          ...(options.cacheTtlMs === undefined ? {} : { cacheTtlMs: options.cacheTtlMs }),
        }),
        ...(options.revocationCheckMs === undefined ? {} : { revocationCheckMs: options.revocationCheckMs }),
      },
      audit,
      ...options.server,
    },
  });
  const f = fixture;
  const k = f.store.apiKeys;
  return {
    ...f,
    keys: k,
    audit,
    createKey(name, tenants, opts = {}) {
      const key = generateApiKey();
      // The SQLite store inserts before its promise settles: the key works as soon as this returns.
      void k.create({ name, keyHash: hashApiKey(key), tenants, role: opts.admin ? "admin" : "client", createdAt: Date.now() });
      return key;
    },
    async auditEntries() {
      await audit.flush();
      return f.store.auditLog.read({ limit: 10_000 });
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
