import { setTimeout as delay } from "node:timers/promises";
import {
  allowInsecureRequests,
  ClientSecretBasic,
  discovery,
  enableNonRepudiationChecks,
  refreshTokenGrant,
  ResponseBodyError,
} from "openid-client";
import { afterEach, describe, expect, it } from "vitest";
import { decodeJwtClaims, startFakeXero, type FakeXero, type FakeXeroOptions } from "@tokenbroker/fake-xero";

const open: FakeXero[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

async function start(options?: FakeXeroOptions): Promise<FakeXero> {
  const xero = await startFakeXero(options);
  open.push(xero);
  return xero;
}

/** A clock the test moves by hand. */
function manualClock(start = Date.now()): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString("base64")}`;
}

/** POSTs a refresh_token grant with client_secret_basic; returns status, headers and JSON body. */
async function refresh(
  xero: FakeXero,
  refreshToken: string,
  auth = basic(xero.clientId, xero.clientSecret),
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(`${xero.issuer}/connect/token`, {
    method: "POST",
    headers: { Authorization: auth, "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken }),
  });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { text };
  }
  return { status: res.status, headers: res.headers, body };
}

/** Refreshes and expects success; returns the new pair. */
async function refreshOk(xero: FakeXero, refreshToken: string): Promise<{ access: string; refresh: string }> {
  const r = await refresh(xero, refreshToken);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { access: String(r.body["access_token"]), refresh: String(r.body["refresh_token"]) };
}

async function getConnections(xero: FakeXero, accessToken: string, query = ""): Promise<{ status: number; body: unknown }> {
  const res = await fetch(xero.connectionsUrl + query, { headers: { Authorization: `Bearer ${accessToken}` } });
  return { status: res.status, body: await res.json() };
}

describe("fake Xero: discovery and openid-client", () => {
  it("publishes discovery metadata and a JWKS with the RS256 key", async () => {
    const xero = await start();
    expect(xero.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const meta = (await (await fetch(`${xero.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(meta).toMatchObject({
      issuer: xero.issuer,
      token_endpoint: `${xero.issuer}/connect/token`,
      jwks_uri: `${xero.issuer}/.well-known/openid-configuration/jwks`,
      revocation_endpoint: `${xero.issuer}/connect/revocation`,
      authorization_endpoint: `${xero.issuer}/identity/connect/authorize`,
      response_types_supported: ["code"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["RS256"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
      code_challenge_methods_supported: ["S256"],
    });
    expect(meta["grant_types_supported"]).toContain("refresh_token");
    expect(meta["scopes_supported"]).toContain("offline_access");
    const jwks = (await (await fetch(String(meta["jwks_uri"]))).json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: "RSA", use: "sig", alg: "RS256", e: "AQAB" });
    expect(jwks.keys[0]?.["kid"]).toEqual(expect.any(String));
    expect(jwks.keys[0]).not.toHaveProperty("d"); // no private part
  });

  it("refreshes through openid-client, which accepts the id_token and its signature", async () => {
    const xero = await start();
    const grant = xero.addGrant({ userId: "user-1", tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    const config = await discovery(new URL(xero.issuer), xero.clientId, xero.clientSecret, ClientSecretBasic(xero.clientSecret), {
      execute: [allowInsecureRequests],
    });
    enableNonRepudiationChecks(config); // verify the id_token signature against the JWKS
    const tokens = await refreshTokenGrant(config, grant.refreshToken);

    expect(tokens.token_type).toBe("bearer");
    expect(tokens.expires_in).toBe(1800);
    expect(tokens.refresh_token).toEqual(expect.any(String));
    expect(tokens.refresh_token).not.toBe(grant.refreshToken);
    expect(tokens.scope?.split(" ")).toContain("offline_access");
    expect(tokens.claims()).toMatchObject({ iss: xero.issuer, aud: xero.clientId, sub: "user-1", xero_userid: "user-1" });

    const claims = decodeJwtClaims(tokens.access_token);
    expect(claims).toMatchObject({
      iss: xero.issuer,
      aud: `${xero.issuer}/resources`,
      sub: "user-1",
      client_id: xero.clientId,
      xero_userid: "user-1",
      authentication_event_id: grant.tenants[0]?.authEventId,
    });
    expect(claims?.["scope"]).toEqual(expect.arrayContaining(["openid", "offline_access"]));
    expect(Number(claims?.["exp"]) - Number(claims?.["iat"])).toBe(1800);
    expect(claims?.["jti"]).toEqual(expect.any(String));

    // The new refresh token works through openid-client too.
    const next = await refreshTokenGrant(config, String(tokens.refresh_token));
    expect(next.access_token).not.toBe(tokens.access_token);
    expect(xero.refreshes).toBe(2);
  });

  it("openid-client sees a spent refresh token past its grace as invalid_grant", async () => {
    const xero = await start({ graceSeconds: 0 });
    const grant = xero.addGrant();
    const config = await discovery(new URL(xero.issuer), xero.clientId, xero.clientSecret, ClientSecretBasic(xero.clientSecret), {
      execute: [allowInsecureRequests],
    });
    await refreshTokenGrant(config, grant.refreshToken);
    const err = await refreshTokenGrant(config, grant.refreshToken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResponseBodyError);
    expect((err as ResponseBodyError).error).toBe("invalid_grant");
  });
});

describe("fake Xero: refresh token rotation", () => {
  it('"same": a retry inside the grace period returns the same pair; the new token keeps working', async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, graceRetry: "same" });
    const grant = xero.addGrant();
    const first = await refreshOk(xero, grant.refreshToken);
    expect(xero.getGrant(grant.grantId)?.refreshToken).toBe(first.refresh);

    clock.advance(29 * 60_000);
    const retry = await refreshOk(xero, grant.refreshToken);
    expect(retry).toEqual(first);

    const second = await refreshOk(xero, first.refresh);
    expect(second.refresh).not.toBe(first.refresh);
    expect(second.access).not.toBe(first.access);
    expect(xero.refreshes).toBe(3);
    expect(xero.graceViolations).toBe(0);
  });

  it('"new": a retry issues another pair that supersedes the first', async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, graceRetry: "new" });
    const grant = xero.addGrant();
    const first = await refreshOk(xero, grant.refreshToken);
    const retry = await refreshOk(xero, grant.refreshToken);
    expect(retry.refresh).not.toBe(first.refresh);
    expect(retry.access).not.toBe(first.access);
    expect(xero.getGrant(grant.grantId)?.refreshToken).toBe(retry.refresh);

    const superseded = await refresh(xero, first.refresh);
    expect(superseded.status).toBe(400);
    expect(superseded.body).toEqual({ error: "invalid_grant" });
    await refreshOk(xero, retry.refresh);
    expect(xero.graceViolations).toBe(0);
  });

  it("a used token past its grace period gets invalid_grant and counts a grace violation", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, graceSeconds: 1800 });
    const grant = xero.addGrant();
    const first = await refreshOk(xero, grant.refreshToken);

    clock.advance(1800 * 1000);
    const late = await refresh(xero, grant.refreshToken);
    expect(late.status).toBe(400);
    expect(late.body).toEqual({ error: "invalid_grant" });
    expect(late.headers.get("cache-control")).toBe("no-store");
    expect(xero.graceViolations).toBe(1);

    // The grant itself survives: whoever holds the current token can refresh.
    await refreshOk(xero, first.refresh);
    expect(xero.graceViolations).toBe(1);
  });

  it("unknown and revoked refresh tokens get invalid_grant without a grace violation", async () => {
    const xero = await start();
    const unknown = await refresh(xero, "not-a-token");
    expect(unknown.status).toBe(400);
    expect(unknown.body).toEqual({ error: "invalid_grant" });

    const grant = xero.addGrant();
    xero.revokeGrant(grant.grantId);
    const revoked = await refresh(xero, grant.refreshToken);
    expect(revoked.body).toEqual({ error: "invalid_grant" });
    expect(xero.getGrant(grant.grantId)).toMatchObject({ revoked: true, tenants: [] });
    expect(xero.graceViolations).toBe(0);
    expect(xero.invalidGrants).toBe(2);
  });

  it("an unused refresh token expires after its lifetime (60 days by default)", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now });
    const grant = xero.addGrant();
    const fresh = xero.addGrant();
    clock.advance(59 * 86_400_000);
    await refreshOk(xero, fresh.refreshToken);
    clock.advance(86_400_000);
    expect((await refresh(xero, grant.refreshToken)).body).toEqual({ error: "invalid_grant" });
  });

  it("response carries the Xero fields, no-store, and the configured access token lifetime", async () => {
    const xero = await start({ accessTokenLifetimeSeconds: 600 });
    const grant = xero.addGrant();
    const r = await refresh(xero, grant.refreshToken);
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("no-store");
    expect(Object.keys(r.body).sort()).toEqual(["access_token", "expires_in", "id_token", "refresh_token", "scope", "token_type"].sort());
    expect(r.body).toMatchObject({ token_type: "Bearer", expires_in: 600 });

    xero.setAccessTokenLifetime(60);
    const r2 = await refresh(xero, String(r.body["refresh_token"]));
    expect(r2.body["expires_in"]).toBe(60);
    const claims = decodeJwtClaims(String(r2.body["access_token"]));
    expect(Number(claims?.["exp"]) - Number(claims?.["iat"])).toBe(60);
    const id = decodeJwtClaims(String(r2.body["id_token"]));
    expect(Number(id?.["exp"]) - Number(id?.["iat"])).toBe(300);
  });
});

describe("fake Xero: client authentication and grant types", () => {
  it("rejects a wrong or missing client with 401 invalid_client, leaving the refresh token unspent", async () => {
    const xero = await start({ graceSeconds: 0 });
    const grant = xero.addGrant();
    const wrong = await refresh(xero, grant.refreshToken, basic(xero.clientId, "wrong-secret"));
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual({ error: "invalid_client" });
    const otherClient = await refresh(xero, grant.refreshToken, basic("someone-else", xero.clientSecret));
    expect(otherClient.status).toBe(401);

    const missing = await fetch(`${xero.issuer}/connect/token`, {
      method: "POST",
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: grant.refreshToken }),
    });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ error: "invalid_client" });

    expect(xero.tokenEndpointCalls).toBe(3);
    expect(xero.refreshes).toBe(0);
    await refreshOk(xero, grant.refreshToken); // graceSeconds 0: it would fail had it been spent
  });

  it("accepts client_secret_post", async () => {
    const xero = await start();
    const grant = xero.addGrant();
    const res = await fetch(`${xero.issuer}/connect/token`, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: grant.refreshToken,
        client_id: xero.clientId,
        client_secret: xero.clientSecret,
      }),
    });
    expect(res.status).toBe(200);
    const wrong = await fetch(`${xero.issuer}/connect/token`, {
      method: "POST",
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: "x", client_id: xero.clientId, client_secret: "no" }),
    });
    expect(wrong.status).toBe(401);
  });

  it("answers unsupported_grant_type for other grants", async () => {
    const xero = await start();
    const res = await fetch(`${xero.issuer}/connect/token`, {
      method: "POST",
      headers: { Authorization: basic(xero.clientId, xero.clientSecret) },
      body: new URLSearchParams({ grant_type: "password", username: "u", password: "p" }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "unsupported_grant_type" });
  });
});

describe("fake Xero: scripted failures and latency", () => {
  it("failNext 503 answers before touching state: the refresh token stays usable", async () => {
    const xero = await start({ graceSeconds: 0 });
    const grant = xero.addGrant();
    xero.failNext(1, { status: 503 });
    const failed = await refresh(xero, grant.refreshToken);
    expect(failed.status).toBe(503);
    expect(xero.getGrant(grant.grantId)?.refreshToken).toBe(grant.refreshToken);
    expect(xero.refreshes).toBe(0);

    await refreshOk(xero, grant.refreshToken);
    expect(xero.tokenEndpointCalls).toBe(2);
    expect(xero.refreshes).toBe(1);
  });

  it("failNext 429 sets Retry-After and fails exactly n calls", async () => {
    const xero = await start({ graceSeconds: 0 });
    const grant = xero.addGrant();
    xero.failNext(2, { status: 429, retryAfterSeconds: 7 });
    for (let i = 0; i < 2; i++) {
      const r = await refresh(xero, grant.refreshToken);
      expect(r.status).toBe(429);
      expect(r.headers.get("retry-after")).toBe("7");
    }
    await refreshOk(xero, grant.refreshToken);
    expect(xero.tokenEndpointCalls).toBe(3);
  });

  it("failNext can script OAuth errors (invalid_grant, invalid_client)", async () => {
    const xero = await start();
    const grant = xero.addGrant();
    xero.failNext(1, { status: 400, error: "invalid_grant" });
    xero.failNext(1, { status: 401, error: "invalid_client" });
    const a = await refresh(xero, grant.refreshToken);
    const b = await refresh(xero, grant.refreshToken);
    expect([a.status, a.body]).toEqual([400, { error: "invalid_grant" }]);
    expect([b.status, b.body]).toEqual([401, { error: "invalid_client" }]);
    expect(xero.invalidGrants).toBe(0); // scripted, not real
    await refreshOk(xero, grant.refreshToken);
  });

  it("latency delays the answer, and the token is spent only when the answer is produced", async () => {
    const xero = await start();
    const grant = xero.addGrant();
    xero.setLatency(300);
    const started = Date.now();
    const pending = refresh(xero, grant.refreshToken);
    await delay(100);
    expect(xero.tokenEndpointCalls).toBe(1);
    expect(xero.getGrant(grant.grantId)?.refreshToken).toBe(grant.refreshToken);
    const r = await pending;
    expect(r.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(xero.getGrant(grant.grantId)?.refreshToken).toBe(r.body["refresh_token"]);
  });

  it("close() resolves promptly with a delayed request in flight", async () => {
    const xero = await start({ latencyMs: 10_000 });
    const grant = xero.addGrant();
    const pending = refresh(xero, grant.refreshToken).catch((e: unknown) => e);
    await delay(50);
    const started = Date.now();
    await xero.close();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(Error);
    expect(xero.getGrant(grant.grantId)?.refreshToken).toBe(grant.refreshToken);
    await expect(fetch(`${xero.issuer}/.well-known/openid-configuration`)).rejects.toThrow();
  });
});

describe("fake Xero: connections API", () => {
  it("lists the grant's tenants for a valid access token", async () => {
    const xero = await start();
    const grant = xero.addGrant({
      tenants: [
        { tenantId: "t-1", tenantName: "Org A" },
        { tenantName: "Org B", tenantType: "PRACTICE" },
      ],
    });
    const { access } = await refreshOk(xero, grant.refreshToken);
    const r = await getConnections(xero, access);
    expect(r.status).toBe(200);
    const list = r.body as Array<Record<string, unknown>>;
    expect(list).toHaveLength(2);
    expect(list[0]).toEqual({
      id: grant.tenants[0]?.connectionId,
      authEventId: grant.authEventId,
      tenantId: "t-1",
      tenantType: "ORGANISATION",
      tenantName: "Org A",
      createdDateUtc: expect.any(String),
      updatedDateUtc: expect.any(String),
    });
    expect(list[1]).toMatchObject({ tenantName: "Org B", tenantType: "PRACTICE" });
    expect(Number.isNaN(Date.parse(String(list[0]?.["createdDateUtc"])))).toBe(false);

    // Another user's grant sees only its own tenants.
    const other = xero.addGrant({ tenants: [{ tenantName: "Org C" }] });
    const otherAccess = (await refreshOk(xero, other.refreshToken)).access;
    const otherList = (await getConnections(xero, otherAccess)).body as Array<Record<string, unknown>>;
    expect(otherList.map((t) => t["tenantName"])).toEqual(["Org C"]);
  });

  it("filters by authEventId, and new access tokens carry the latest consent's id", async () => {
    const xero = await start();
    const grant = xero.addGrant({ tenants: [{ tenantName: "Org A" }] });
    const added = xero.addTenants(grant.grantId, [{ tenantName: "Org B" }, { tenantName: "Org C" }]);
    expect(added[0]?.authEventId).not.toBe(grant.authEventId);
    const { access } = await refreshOk(xero, grant.refreshToken);
    expect(decodeJwtClaims(access)?.["authentication_event_id"]).toBe(added[0]?.authEventId);

    const all = (await getConnections(xero, access)).body as Array<Record<string, unknown>>;
    expect(all).toHaveLength(3);
    const latest = await getConnections(xero, access, `?authEventId=${added[0]?.authEventId}`);
    expect((latest.body as Array<Record<string, unknown>>).map((t) => t["tenantName"])).toEqual(["Org B", "Org C"]);
    const first = await getConnections(xero, access, `?authEventId=${grant.authEventId}`);
    expect((first.body as Array<Record<string, unknown>>).map((t) => t["tenantName"])).toEqual(["Org A"]);
    expect((await getConnections(xero, access, "?authEventId=nope")).body).toEqual([]);
  });

  it("rejects expired, foreign and missing access tokens with 401", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, accessTokenLifetimeSeconds: 1800 });
    const grant = xero.addGrant();
    const { access } = await refreshOk(xero, grant.refreshToken);
    clock.advance(1799 * 1000);
    expect((await getConnections(xero, access)).status).toBe(200);
    clock.advance(1000);
    const expired = await getConnections(xero, access);
    expect(expired.status).toBe(401);
    expect(expired.body).toMatchObject({ Title: "Unauthorized", Status: 401 });
    expect(String((expired.body as Record<string, unknown>)["Detail"])).toMatch(/^TokenExpired/);

    // A token signed by another fake (another key) is not accepted.
    const other = await start();
    const foreign = (await refreshOk(other, other.addGrant().refreshToken)).access;
    const rejected = await getConnections(xero, foreign);
    expect(rejected.status).toBe(401);
    expect((rejected.body as Record<string, unknown>)["Detail"]).toBe("AuthenticationUnsuccessful");

    const missing = await fetch(xero.connectionsUrl);
    expect(missing.status).toBe(401);
  });

  it("DELETE /connections/{id} disconnects one tenant: 204, then 404", async () => {
    const xero = await start();
    const grant = xero.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    const { access } = await refreshOk(xero, grant.refreshToken);
    const id = String(grant.tenants[0]?.connectionId);
    const del = (): Promise<Response> =>
      fetch(`${xero.connectionsUrl}/${id}`, { method: "DELETE", headers: { Authorization: `Bearer ${access}` } });
    expect((await del()).status).toBe(204);
    expect((await del()).status).toBe(404);
    const list = (await getConnections(xero, access)).body as Array<Record<string, unknown>>;
    expect(list.map((t) => t["tenantName"])).toEqual(["Org B"]);
    expect(xero.getGrant(grant.grantId)?.tenants.map((t) => t.tenantName)).toEqual(["Org B"]);
  });
});

describe("fake Xero: revocation and misc", () => {
  it("POST /connect/revocation revokes the grant: invalid_grant and no connections", async () => {
    const xero = await start();
    const grant = xero.addGrant({ tenants: [{ tenantName: "Org A" }] });
    const pair = await refreshOk(xero, grant.refreshToken);
    const revoke = (auth: string, token: string): Promise<Response> =>
      fetch(`${xero.issuer}/connect/revocation`, {
        method: "POST",
        headers: { Authorization: auth },
        body: new URLSearchParams({ token }),
      });
    expect((await revoke(basic(xero.clientId, "wrong"), pair.refresh)).status).toBe(401);
    expect(xero.getGrant(grant.grantId)?.revoked).toBe(false);

    expect((await revoke(basic(xero.clientId, xero.clientSecret), pair.refresh)).status).toBe(200);
    expect(xero.getGrant(grant.grantId)?.revoked).toBe(true);
    const after = await refresh(xero, pair.refresh);
    expect([after.status, after.body]).toEqual([400, { error: "invalid_grant" }]);
    expect((await getConnections(xero, pair.access)).body).toEqual([]);
    // RFC 7009: an unknown token is not an error.
    expect((await revoke(basic(xero.clientId, xero.clientSecret), "unknown")).status).toBe(200);
  });

  it("counts every token-endpoint call, successful refreshes and grace violations separately", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, graceSeconds: 60 });
    const grant = xero.addGrant();
    const pair = await refreshOk(xero, grant.refreshToken); // call 1, refresh 1
    await refreshOk(xero, grant.refreshToken); // call 2, refresh 2 (grace retry)
    await refresh(xero, pair.refresh, basic("x", "y")); // call 3, invalid_client
    xero.failNext(1, { status: 500 });
    await refresh(xero, pair.refresh); // call 4, scripted failure
    clock.advance(61_000);
    await refresh(xero, grant.refreshToken); // call 5, grace violation
    await refresh(xero, "unknown"); // call 6, invalid_grant
    expect({
      calls: xero.tokenEndpointCalls,
      refreshes: xero.refreshes,
      graceViolations: xero.graceViolations,
      invalidGrants: xero.invalidGrants,
    }).toEqual({ calls: 6, refreshes: 2, graceViolations: 1, invalidGrants: 2 });
  });

  it("answers 404 for unknown paths and 405 for wrong methods", async () => {
    const xero = await start();
    expect((await fetch(`${xero.issuer}/nope`)).status).toBe(404);
    expect((await fetch(`${xero.issuer}/connections/a/b`, { method: "DELETE" })).status).toBe(404);
    const wrong = await fetch(`${xero.issuer}/connect/token`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
    expect(xero.tokenEndpointCalls).toBe(0);
  });

  it("validates options and control calls", async () => {
    await expect(startFakeXero({ graceSeconds: -1 })).rejects.toMatchObject({ code: "invalid_argument" });
    const xero = await start();
    expect(() => xero.revokeGrant("no-such-grant")).toThrow(expect.objectContaining({ code: "grant_not_found" }));
    expect(() => xero.failNext(1, { status: 42 })).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    expect(() => xero.setLatency(-5)).toThrow(expect.objectContaining({ code: "invalid_argument" }));
  });
});
