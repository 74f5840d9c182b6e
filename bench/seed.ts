import { randomBytes, randomUUID } from "node:crypto";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { DEFAULT_SCOPES } from "@tokenbroker/fake-xero";
import { openSqliteStore } from "../src/store/sqlite-store.js";

/** Options for {@link seedStore}. */
export interface SeedOptions {
  /** Database file, created. */
  path: string;
  connections: number;
  tenantsPerConnection: number;
  /** AES-256 key the tokens are sealed with, as `tokenbroker serve` stores them. */
  encryptionKey: Buffer;
}

/**
 * Fills a new database through the store (`saveConnection`, as an import
 * does) with `connections` grants of `tenantsPerConnection` tenants each, every
 * token set fresh for 30 minutes and sealed with `encryptionKey`. The tokens
 * are random strings of Xero's sizes: nothing is refreshed during the bench.
 * Returns the tenant ids.
 */
export async function seedStore(options: SeedOptions): Promise<string[]> {
  // One fsync per import is the store's durability promise; seeding needs none of it.
  const store = openSqliteStore({ path: options.path, encryption: createTokenCipher([options.encryptionKey]), synchronous: "off" });
  const tenantIds: string[] = [];
  try {
    const now = Date.now();
    for (let c = 0; c < options.connections; c++) {
      const tenants = Array.from({ length: options.tenantsPerConnection }, (_, t) => ({
        tenantId: randomUUID(),
        xeroConnectionId: randomUUID(),
        tenantName: `Bench Org ${c}.${t}`,
        tenantType: "ORGANISATION",
        authEventId: randomUUID(),
      }));
      await store.connections.saveConnection({
        xeroUserId: randomUUID(),
        tokenSet: {
          accessToken: randomBytes(900).toString("base64url"),
          refreshToken: randomBytes(32).toString("hex"),
          idToken: randomBytes(600).toString("base64url"),
          tokenType: "Bearer",
          scopes: [...DEFAULT_SCOPES],
          expiresAt: now + 30 * 60_000,
          obtainedAt: now,
          refreshTokenIssuedAt: now,
        },
        tenants,
      });
      for (const t of tenants) tenantIds.push(t.tenantId);
    }
  } finally {
    await store.close();
  }
  return tenantIds;
}
