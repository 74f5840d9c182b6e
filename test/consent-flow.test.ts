import { createHash } from "node:crypto";
import { request } from "node:http";
import { Code } from "@connectrpc/connect";
import { randomPKCECodeVerifier, randomState } from "openid-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "../src/config.js";
import { consentFromEnv } from "../src/consent/consent-config.js";
import type { FakeOrganisation } from "@tokenbroker/fake-xero";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { connectedId, connectOverHttp, consentAtXero, hop, startConsent, type Hop } from "./helpers/consent-driver.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { rejection } from "./helpers/rejection.js";

const MINUTE = 60_000;

let f: BrokerFixture;
let au: FakeOrganisation;
let nz: FakeOrganisation;
let uk: FakeOrganisation;

beforeEach(async () => {
  f = await startBroker({ noImport: true });
  [au, nz, uk] = f.fake.organisations as [FakeOrganisation, FakeOrganisation, FakeOrganisation];
});
afterEach(async () => {
  await f.close();
});

/** Connects `user` with the given organisations through the real pages; returns the connection id. */
async function connect(user: string, orgs: FakeOrganisation[]): Promise<string> {
  return connectedId(await connectOverHttp(f.server.url, { user, tenantIds: orgs.map((o) => o.tenantId) }));
}

async function tokenFor(tenantId: string) {
  const { token } = await f.client().getToken({ selector: { case: "tenantId", value: tenantId } });
  return token!;
}

/** A refused callback: 400, the error page saying why and that nothing was stored. */
function expectRefused(r: Hop, why: RegExp, status = 400): void {
  expect(r.status, r.body.slice(0, 300)).toBe(status);
  expect(r.location).toBeUndefined();
  expect(r.body).toMatch(why);
  expect(r.body).toContain("Nothing was stored.");
}

async function expectNothingStored(): Promise<void> {
  expect(await f.store.connections.listConnections()).toEqual([]);
  expect(f.fake.codeExchanges).toBe(0);
}

describe("connecting an organisation over HTTP", () => {
  it("GET /connect sends the browser to Xero's authorize endpoint with PKCE S256, a state, the scopes and the redirect URI", async () => {
    const first = await hop(`${f.server.url}/connect`);
    expect(first.status).toBe(303);
    const url = new URL(first.location!);
    expect(url.origin + url.pathname).toBe(`${f.fake.issuer}/identity/connect/authorize`);
    const p = url.searchParams;
    expect(p.get("response_type")).toBe("code");
    expect(p.get("client_id")).toBe(f.fake.clientId);
    expect(p.get("redirect_uri")).toBe(`${f.server.url}/oauth/callback`);
    expect(p.get("scope")?.split(" ").sort()).toEqual(
      ["openid", "profile", "email", "accounting.transactions", "accounting.settings", "offline_access"].sort(),
    );
    expect(p.get("code_challenge_method")).toBe("S256");
    expect(p.get("state")).toMatch(/^[\w-]{40,}$/);
    // The verifier stays in the database; only its S256 challenge travels.
    const row = withRawDatabase(f.dbPath, (db) =>
      db.prepare("SELECT code_verifier FROM oauth_states WHERE state = ?").get(p.get("state")),
    ) as { code_verifier: string } | undefined;
    expect(createHash("sha256").update(row!.code_verifier).digest("base64url")).toBe(p.get("code_challenge"));
    expect(url.href).not.toContain(row!.code_verifier);
    // The consent is bound to this browser by a cookie that only the callback sees.
    expect(first.setCookie).toHaveLength(1);
    expect(first.setCookie[0]).toMatch(
      /^tokenbroker_consent_[\w-]+=[\w-]{40,}; Path=\/oauth\/callback; Max-Age=600; HttpOnly; SameSite=Lax$/,
    );
  });

  it("GET /connect on another host name than the redirect URI's first moves there, so that the cookie comes back with the callback", async () => {
    const answer = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      const req = request(`${f.server.url}/connect`, { headers: { host: `localhost:${f.server.port}` } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, location: res.headers.location });
      });
      req.on("error", reject);
      req.end();
    });
    expect(answer).toEqual({ status: 303, location: `${f.server.url}/connect?moved=1` });
    expect(await f.store.connections.listConnections()).toEqual([]);
  });

  it("the callback stores the user's token set and the tenants consented to, then redirects to the status page, which lists them", async () => {
    const r = await connectOverHttp(f.server.url, { user: "alice@example.com", tenantIds: [au.tenantId, nz.tenantId] });
    const id = connectedId(r);
    expect(r.location).toBe(`/?connected=${id}`);
    expect(f.fake.codeExchanges).toBe(1);
    const token = await tokenFor(au.tenantId);
    expect(token.connectionId).toBe(id);
    expect([...token.tenantIds].sort()).toEqual([au.tenantId, nz.tenantId].sort());
    expect(f.fake.tokenEndpointCalls).toBe(1); // the code exchange; the fresh token needed no refresh

    const [summary] = await f.store.connections.listConnections();
    expect(summary).toMatchObject({ connectionId: id, xeroUserId: "alice@example.com", userName: "alice@example.com", state: "active" });
    const page = await hop(`${f.server.url}${r.location}`);
    expect(page.status).toBe(200);
    expect(page.body).toContain("Connected alice@example.com: 2 organisations");
    for (const name of ["Demo Company (AU)", "Demo Company (NZ)"]) expect(page.body).toContain(name);
    expect(page.body).not.toContain("Demo Company (UK)");
    const stored = await f.store.tokens.getToken(id);
    for (const secret of [stored!.accessToken, stored!.refreshToken, stored!.idToken!]) expect(page.body).not.toContain(secret);
  });

  it("a wrong state gives a clear error page and stores nothing; the genuine answer still works afterwards", async () => {
    const { authorizeUrl, cookie } = await startConsent(f.server.url);
    const callback = await consentAtXero(authorizeUrl, { user: "alice@example.com", tenantIds: [au.tenantId] });
    const forged = new URL(callback);
    forged.searchParams.set("state", randomState());
    expectRefused(await hop(forged, { cookie }), /This consent was not started here/);
    await expectNothingStored();
    connectedId(await hop(callback, { cookie }));
  });

  it("a missing state gives a clear error page and stores nothing", async () => {
    const { authorizeUrl, cookie } = await startConsent(f.server.url);
    const callback = await consentAtXero(authorizeUrl, { user: "alice@example.com", tenantIds: [au.tenantId] });
    callback.searchParams.delete("state");
    expectRefused(await hop(callback, { cookie }), /carries no state/);
    await expectNothingStored();
  });

  it("a reused state is refused: the second answer changes nothing and spends no code", async () => {
    const r = await connectOverHttp(f.server.url, { user: "alice@example.com", tenantIds: [au.tenantId] });
    const id = connectedId(r);
    const before = await f.store.tokens.getToken(id);
    expectRefused(await hop(r.callbackUrl, { cookie: r.cookie }), /already completed/);
    expect(f.fake.codeExchanges).toBe(1);
    expect(await f.store.tokens.getToken(id)).toEqual(before);
  });

  it("a state older than 10 minutes has expired: refused, nothing stored", async () => {
    const { authorizeUrl, cookie } = await startConsent(f.server.url);
    const callback = await consentAtXero(authorizeUrl, { user: "alice@example.com", tenantIds: [au.tenantId] });
    f.clock.advance(10 * MINUTE + 1000);
    expectRefused(await hop(callback, { cookie }), /has expired/);
    await expectNothingStored();
  });

  it("an answer arriving in a browser without the consent's cookie is refused", async () => {
    const { authorizeUrl } = await startConsent(f.server.url);
    const callback = await consentAtXero(authorizeUrl, { user: "alice@example.com", tenantIds: [au.tenantId] });
    expectRefused(await hop(callback, { cookie: "tokenbroker_consent_x=y" }), /started in another browser/, 403);
    await expectNothingStored();
  });

  it("an error from Xero (the user clicked Cancel) gives a clear error page and stores nothing", async () => {
    const r = await connectOverHttp(f.server.url, { user: "alice@example.com", tenantIds: [au.tenantId], action: "cancel" });
    expect(r.callbackUrl.searchParams.get("error")).toBe("access_denied");
    expectRefused(r, /Xero did not grant access \(access_denied: The user cancelled\)/);
    await expectNothingStored();
    expect(f.fake.tokenEndpointCalls).toBe(0);
  });

  it("PKCE: the fake Xero rejects a wrong code verifier, so nothing is stored", async () => {
    const { authorizeUrl, cookie } = await startConsent(f.server.url);
    const callback = await consentAtXero(authorizeUrl, { user: "alice@example.com", tenantIds: [au.tenantId] });
    withRawDatabase(f.dbPath, (db) =>
      db
        .prepare("UPDATE oauth_states SET code_verifier = ? WHERE state = ?")
        .run(randomPKCECodeVerifier(), callback.searchParams.get("state")),
    );
    expectRefused(await hop(callback, { cookie }), /Xero refused the authorisation code/);
    expect(f.fake.invalidGrants).toBe(1);
    await expectNothingStored();
  });

  it("an issuer that cannot be reached gives a 502 page when the consent starts", async () => {
    await f.fake.close();
    const r = await hop(`${f.server.url}/connect`);
    expect(r.status).toBe(502);
    expect(r.body).toContain("Xero could not be reached");
  });
});

describe("many users, many tenants", () => {
  it("two users' token sets never mix; a shared tenant is served by the most recently authorised active grant", async () => {
    const alice = await connect("alice@example.com", [au, nz]);
    f.clock.advance(MINUTE);
    const bob = await connect("bob@example.com", [nz, uk]);
    expect(bob).not.toBe(alice);

    const a = (await f.store.tokens.getToken(alice))!;
    const b = (await f.store.tokens.getToken(bob))!;
    expect(a.accessToken).not.toBe(b.accessToken);
    expect(a.refreshToken).not.toBe(b.refreshToken);
    const userOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString())["xero_userid"];
    expect(userOf(a.accessToken)).toBe("alice@example.com");
    expect(userOf(b.accessToken)).toBe("bob@example.com");
    expect((await tokenFor(au.tenantId)).connectionId).toBe(alice);
    expect((await tokenFor(uk.tenantId)).connectionId).toBe(bob);
    expect((await tokenFor(nz.tenantId)).connectionId).toBe(bob); // bob authorised last

    // Alice consents again (to NZ only): her connection gets the new token set and is now the most recent.
    f.clock.advance(MINUTE);
    expect(await connect("alice@example.com", [nz])).toBe(alice);
    expect((await tokenFor(nz.tenantId)).connectionId).toBe(alice);
    expect((await f.store.connections.listConnections()).length).toBe(2);

    // Alice's grant is revoked: once her token expires she needs re-authorisation, and bob serves NZ.
    await f.identity.revoke((await f.store.tokens.getToken(alice))!.refreshToken);
    f.clock.set((await f.store.tokens.getToken(alice))!.expiresAt + 1000);
    const err = await rejection(f.client().getToken({ selector: { case: "connectionId", value: alice } }));
    expect(err.code).toBe(Code.FailedPrecondition);
    const viaNz = await tokenFor(nz.tenantId);
    expect(viaNz.connectionId).toBe(bob);
    expect(userOf(viaNz.accessToken)).toBe("bob@example.com");
  });

  it("the same user consenting again replaces the token set and adds the new tenants: still one connection", async () => {
    const first = await connect("alice@example.com", [au]);
    const before = (await f.store.tokens.getToken(first))!;
    f.clock.advance(MINUTE);
    expect(await connect("alice@example.com", [uk])).toBe(first);
    const after = (await f.store.tokens.getToken(first))!;
    expect(after.version).toBe(before.version + 1);
    expect(after.refreshToken).not.toBe(before.refreshToken);
    expect([...after.tenantIds].sort()).toEqual([au.tenantId, uk.tenantId].sort());
    expect(await f.store.connections.listConnections()).toHaveLength(1);
  });

  it("a tenant that vanished from Xero's list is marked gone at the next consent: no longer served, shown as gone", async () => {
    const alice = await connect("alice@example.com", [au, nz]);
    // The user removes AU at Xero (as in Xero's "connected apps" page).
    const access = (await tokenFor(au.tenantId)).accessToken;
    const xeroId = (await f.store.connections.listConnections())[0]!.tenants.find((t) => t.tenantId === au.tenantId)!.xeroConnectionId!;
    const res = await fetch(`${f.fake.connectionsUrl}/${xeroId}`, { method: "DELETE", headers: { authorization: `Bearer ${access}` } });
    expect(res.status).toBe(204);

    await connect("alice@example.com", [uk]);
    const [summary] = await f.store.connections.listConnections();
    const states = Object.fromEntries(summary!.tenants.map((t) => [t.tenantName, t.state]));
    expect(states).toEqual({ "Demo Company (AU)": "gone", "Demo Company (NZ)": "active", "Demo Company (UK)": "active" });
    expect(summary!.tenants.find((t) => t.tenantId === au.tenantId)?.goneAt).toBe(f.clock.now());
    const err = await rejection(f.client().getToken({ selector: { case: "tenantId", value: au.tenantId } }));
    expect(err.code).toBe(Code.NotFound);
    expect([...(await tokenFor(nz.tenantId)).tenantIds].sort()).toEqual([nz.tenantId, uk.tenantId].sort());
    const page = await hop(`${f.server.url}/`);
    expect(page.body).toMatch(new RegExp(`<tr class="gone" data-tenant-id="${au.tenantId}">.*removed at Xero`));
    expect(alice).toBe(summary!.connectionId);
  });
});

describe("the status page", () => {
  it("shows each connection's user, state, countdown, refresh-token age, last refresh and last error, escaped, with Re-authorise only where needed", async () => {
    const alice = await connect("alice@example.com", [au]);
    const bob = await connect("bob@example.com", [uk]);
    await f.store.connections.markNeedsReauthorization(bob, 'invalid_grant <script>alert("x")</script>');
    f.clock.advance(5 * MINUTE);

    const page = await hop(`${f.server.url}/`);
    expect(page.status).toBe(200);
    const section = (id: string) => new RegExp(`<section[^>]*id="connection-${id}"[\\s\\S]*?</section>`).exec(page.body)?.[0] ?? "";
    const a = section(alice);
    const b = section(bob);
    expect(a).toContain("alice@example.com");
    expect(a).toMatch(/class="badge state active">active</);
    expect(a).toMatch(/data-remaining-ms="1500000">expires in 25m 0s</);
    expect(a).toContain("5 minutes old");
    expect(a).toMatch(/Last refresh<\/dt><dd><span class="muted">never/);
    expect(a).not.toContain("Re-authorise");
    expect(b).toMatch(/class="badge state needs_reauthorization">needs re-authorisation</);
    expect(b).toMatch(/<a class="button" href="\/connect">Re-authorise<\/a>/);
    expect(b).toContain("invalid_grant &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
    expect(page.body).not.toContain("<script>alert");
    expect(page.body).toMatch(/<a class="button" id="connect" href="\/connect">Connect an organisation<\/a>/);
    expect(page.body).toContain("1 needs re-authorisation");
    // Inline style and script run only with this response's nonce.
    const nonce = /<script nonce="([^"]+)">/.exec(page.body)?.[1];
    const res = await fetch(`${f.server.url}/`);
    expect(res.headers.get("content-security-policy")).toMatch(/script-src 'nonce-[^']+'/);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(nonce).toBeDefined();
    await res.body?.cancel();
  });
});

describe("TOKENBROKER_REDIRECT_URI and TOKENBROKER_SCOPES", () => {
  it("default to localhost:50051/oauth/callback and the accounting scopes; offline_access is always added", () => {
    expect(consentFromEnv({})).toEqual({
      redirectUri: "http://localhost:50051/oauth/callback",
      scopes: ["openid", "profile", "email", "accounting.transactions", "accounting.settings", "offline_access"],
    });
    const custom = consentFromEnv({
      TOKENBROKER_REDIRECT_URI: "https://broker.example.com/xero/callback",
      TOKENBROKER_SCOPES: "openid, accounting.transactions.read",
    });
    expect(custom).toEqual({
      redirectUri: "https://broker.example.com/xero/callback",
      scopes: ["openid", "accounting.transactions.read", "offline_access"],
    });
  });

  it.each([
    ["http://broker.example.com/callback", /https:\/\/ unless its host is localhost/],
    ["http://localhost:50051/oauth/callback?x=1", /no query or fragment/],
    ["not a url", /is not a URL/],
  ])("refuses the redirect URI %s with one clear line", (uri, why) => {
    expect(() => consentFromEnv({ TOKENBROKER_REDIRECT_URI: uri })).toThrow(ConfigError);
    expect(() => consentFromEnv({ TOKENBROKER_REDIRECT_URI: uri })).toThrow(why);
  });
});
