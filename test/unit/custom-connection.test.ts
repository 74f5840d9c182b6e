/**
 * A custom connection (client credentials) in the token logic, on the in-memory store and identity server and fake
 * time: renewed on the refresher's path (one request for many callers, proactive renewal by the scheduler) with its
 * own app's credentials, and an invalid_client for it marks that connection alone for re-authorisation.
 */
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import type { Scheduler } from "../../src/broker/scheduler.js";
import { isBrokerError } from "../../src/errors.js";
import { startCore, TENANT, type CoreFixture } from "../helpers/core-fixture.js";

const CUSTOM_TENANT = "tenant-custom";
const MINUTE = 60_000;

let f: CoreFixture;
let scheduler: Scheduler;
let customId: string;

beforeEach(async () => {
  vi.useFakeTimers();
  f = await startCore();
  scheduler = f.scheduler();
  f.identity.setCustomApp("CUSTOM-APP", "secret-1");
  const {
    xeroUserId: _u,
    authEventId: _a,
    userName: _n,
    ...tokenSet
  } = await f.identity.clientCredentials({
    clientId: "CUSTOM-APP",
    clientSecret: "secret-1",
  });
  ({ connectionId: customId } = await f.store.saveConnection({
    xeroUserId: undefined,
    tokenSet: { ...tokenSet, refreshToken: "secret-1" },
    tenants: [
      { tenantId: CUSTOM_TENANT, xeroConnectionId: undefined, tenantName: "Acme", tenantType: "ORGANISATION", authEventId: undefined },
    ],
    custom: { name: "acme", clientId: "CUSTOM-APP" },
  }));
});
afterEach(async () => {
  await scheduler.stop();
  await f.broker.close(AbortSignal.abort());
  vi.useRealTimers();
});

const byTenant = { tenantId: CUSTOM_TENANT };

it("100 callers after expiry share one client_credentials request; no refresh-token grant is made", async () => {
  const first = await f.broker.getToken(byTenant);
  f.clock.advance(31 * MINUTE);
  const answers = await Promise.all(Array.from({ length: 100 }, () => f.broker.getToken(byTenant)));
  expect(new Set(answers.map((a) => a.accessToken)).size).toBe(1);
  expect(answers[0]!.accessToken).not.toBe(first.accessToken);
  expect(f.identity.clientCredentialsCalls).toBe(2); // the one that stored it, and this renewal
  expect(f.identity.refreshCalls).toBe(0);
  expect((await f.store.getToken(customId))?.refreshToken).toBe("secret-1"); // the secret stays
  expect(f.events).toMatchObject([{ connectionId: customId, cause: "caller", outcome: "ok", upstreamRefreshes: 1 }]);
});

it("the scheduler renews it ahead of expiry, as any connection", async () => {
  const stored = await f.broker.getToken(byTenant); // in use
  f.clock.set(stored.expiresAt - 5 * MINUTE);
  await scheduler.tick();
  await f.settle();
  expect(f.identity.clientCredentialsCalls).toBe(2);
  expect(f.events).toMatchObject([{ connectionId: customId, cause: "proactive", outcome: "ok" }]);
});

it("invalid_client (secret rotated at Xero): this connection needs re-authorisation, saying to run custom add; the others go on", async () => {
  f.identity.setCustomApp("CUSTOM-APP", "secret-2");
  f.clock.advance(31 * MINUTE);
  const errors = await Promise.all(
    Array.from({ length: 10 }, () =>
      f.broker.getToken(byTenant).then(
        () => undefined,
        (e: unknown) => e,
      ),
    ),
  );
  expect(f.identity.clientCredentialsCalls).toBe(2);
  for (const e of errors) {
    expect(isBrokerError(e, "needs_reauthorization")).toBe(true);
    expect((e as Error).message).toContain('tokenbroker custom add --name "acme" --client-id CUSTOM-APP');
  }
  expect((await f.store.getToken(customId))?.state).toBe("needs_reauthorization");
  expect(f.store.lastError(customId)).toContain("tokenbroker custom add");
  expect(f.broker.refresher.misconfiguration).toBeUndefined();
  // Asked again later: no new request, the same advice.
  await expect(f.broker.getToken(byTenant)).rejects.toThrow(/custom add/);
  expect(f.identity.clientCredentialsCalls).toBe(2);
  // The user's grant is renewed as usual.
  expect((await f.broker.getToken({ tenantId: TENANT })).version).toBe(2);
});
