/**
 * Custom connections in the store, on SQLite and PostgreSQL: stored with their name and client id, the client
 * secret sealed as the token set's renewal credential; the same name replaces (the way back after a secret
 * rotation); a refresh keeps the secret; the store says which connections are custom.
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { openStore } from "../src/store/open-store.js";
import type { Store } from "../src/store/store.js";
import type { NewTokenSet } from "../src/token-set.js";
import { useStoreBackends } from "./helpers/store-backends.js";

const backends = useStoreBackends();

function tokenSet(now: number, secret: string): NewTokenSet {
  return {
    accessToken: `at-${randomBytes(12).toString("hex")}`,
    refreshToken: secret,
    idToken: undefined,
    tokenType: "Bearer",
    scopes: ["accounting.transactions"],
    expiresAt: now + 30 * 60_000,
    obtainedAt: now,
    refreshTokenIssuedAt: now,
  };
}

const tenant = { tenantId: "t-acme", xeroConnectionId: "xc-1", tenantName: "Acme", tenantType: "ORGANISATION", authEventId: "ae" };

describe.each(backends)("custom connections on $name", (backend) => {
  const opened: Store[] = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  it.skipIf(backend.skip)("stores name, client id and sealed secret; the same name replaces them; a refresh keeps the secret", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const cipher = createTokenCipher([randomBytes(32)]);
    const location = await backend.location();
    const store = await openStore(location, { clock, encryption: cipher });
    opened.push(store);
    const secret = `secret-${randomBytes(16).toString("hex")}`;

    const first = await store.connections.saveConnection({
      xeroUserId: undefined,
      tokenSet: tokenSet(clock.now(), secret),
      tenants: [tenant],
      custom: { name: "Acme books", clientId: "CLIENT-1" },
    });
    expect(first.created).toBe(true);
    const record = await store.tokens.getToken(first.connectionId);
    expect(record?.custom).toEqual({ name: "Acme books", clientId: "CLIENT-1" });
    expect(record?.refreshToken).toBe(secret);
    expect(record?.tenantIds).toEqual(["t-acme"]);
    expect(await store.connections.findConnectionByTenant("t-acme")).toBe(first.connectionId);
    // Sealed like every other secret: the key id of the rows is the cipher's, none is in clear text.
    expect(await store.tokens.keyIds()).toEqual([cipher.keyId]);
    expect(await store.tokens.unsealed()).toEqual([]);

    // A refresh commits a new access token and keeps the secret.
    const lease = await store.tokens.tryAcquireLease(first.connectionId, "me", 30_000);
    expect(lease.acquired).toBe(true);
    const renewed = await store.tokens.commitRefresh(first.connectionId, "me", record!.version, tokenSet(clock.now(), secret));
    expect(renewed.refreshToken).toBe(secret);
    expect(renewed.custom).toEqual({ name: "Acme books", clientId: "CLIENT-1" });

    // Rejected at Xero, then added again under the same name with a new secret (and client id): the same connection, active.
    await store.connections.markNeedsReauthorization(first.connectionId, "invalid_client");
    const again = await store.connections.saveConnection({
      xeroUserId: undefined,
      tokenSet: tokenSet(clock.now(), "new-secret"),
      tenants: [tenant],
      custom: { name: "Acme books", clientId: "CLIENT-2" },
    });
    expect(again).toEqual({ connectionId: first.connectionId, created: false });
    const back = await store.tokens.getToken(first.connectionId);
    expect(back).toMatchObject({ state: "active", refreshToken: "new-secret", custom: { name: "Acme books", clientId: "CLIENT-2" } });
    expect(back!.version).toBeGreaterThan(renewed.version);

    // Another name is another connection; a user's grant is not custom.
    const other = await store.connections.saveConnection({
      xeroUserId: undefined,
      tokenSet: tokenSet(clock.now(), "s3"),
      tenants: [],
      custom: { name: "Other", clientId: "CLIENT-3" },
    });
    const user = await store.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet(clock.now(), "rt"), tenants: [] });
    expect(other.created).toBe(true);
    expect((await store.tokens.getToken(user.connectionId))?.custom).toBeUndefined();
    const summaries = await store.connections.listConnections();
    expect(summaries.map((c) => c.custom?.name ?? "(user)").sort()).toEqual(["(user)", "Acme books", "Other"]);
    expect(summaries.find((c) => c.connectionId === first.connectionId)).toMatchObject({
      state: "active",
      lastError: undefined,
      custom: { clientId: "CLIENT-2" },
    });
    expect(JSON.stringify(summaries)).not.toContain("new-secret");
  });
});
