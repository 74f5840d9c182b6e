import {
  allowInsecureRequests,
  authorizationCodeGrant,
  buildAuthorizationUrl,
  calculatePKCECodeChallenge,
  ClientSecretBasic,
  discovery,
  randomPKCECodeVerifier,
  randomState,
  refreshTokenGrant,
  type Configuration,
} from "openid-client";
import { afterEach, describe, expect, it } from "vitest";
import { decodeJwtClaims, startFakeXero, type FakeXero, type FakeXeroOptions } from "@tokenbroker/fake-xero";
import { consentAtXero, hiddenFields, hop } from "./helpers/consent-driver.js";

const REDIRECT = "http://127.0.0.1:9/oauth/callback"; // never contacted: the tests read the redirect
const open: FakeXero[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

async function start(options?: FakeXeroOptions): Promise<{ xero: FakeXero; config: Configuration }> {
  const xero = await startFakeXero(options);
  open.push(xero);
  const config = await discovery(new URL(xero.issuer), xero.clientId, undefined, ClientSecretBasic(xero.clientSecret), {
    execute: [allowInsecureRequests],
  });
  return { xero, config };
}

/** An authorization URL with PKCE S256 and a state, as the broker builds it. */
async function authorization(config: Configuration, scope = "openid profile email accounting.transactions offline_access") {
  const verifier = randomPKCECodeVerifier();
  const state = randomState();
  const url = buildAuthorizationUrl(config, {
    response_type: "code",
    redirect_uri: REDIRECT,
    scope,
    state,
    code_challenge: await calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
  });
  return { url, verifier, state };
}

/** POSTs an authorization_code grant by hand (client_secret_basic). */
async function redeem(xero: FakeXero, fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${xero.issuer}/connect/token`, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${xero.clientId}:${xero.clientSecret}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "authorization_code", redirect_uri: REDIRECT, ...fields }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function connections(xero: FakeXero, accessToken: string, query = ""): Promise<Array<Record<string, string>>> {
  const res = await fetch(xero.connectionsUrl + query, { headers: { authorization: `Bearer ${accessToken}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Array<Record<string, string>>;
}

describe("fake Xero: the sign-in and consent page", () => {
  it("shows a prefilled user field, every organisation with a checkbox, Allow access and Cancel, and carries the request in hidden fields", async () => {
    const { xero, config } = await start();
    const { url, state } = await authorization(config);
    const page = await hop(url);
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/<input name="user" value="demo@example.com"/);
    expect(xero.organisations.map((o) => o.tenantName)).toEqual(["Demo Company (AU)", "Demo Company (NZ)", "Demo Company (UK)"]);
    for (const o of xero.organisations) {
      expect(page.body).toContain(`<input type="checkbox" name="tenant" value="${o.tenantId}">`);
      expect(page.body).toContain(o.tenantName);
    }
    expect(page.body).toMatch(/<button[^>]*value="allow">Allow access<\/button>/);
    expect(page.body).toMatch(/<button[^>]*value="cancel"[^>]*>Cancel<\/button>/);
    const hidden = hiddenFields(page.body);
    expect(hidden.get("state")).toBe(state);
    expect(hidden.get("redirect_uri")).toBe(REDIRECT);
    expect(hidden.get("code_challenge_method")).toBe("S256");
  });

  it("refuses an unknown client with an error page and no redirect; an unknown scope goes back with invalid_scope", async () => {
    const { xero, config } = await start();
    const { url } = await authorization(config);
    url.searchParams.set("client_id", "someone-else");
    const unknown = await hop(url);
    expect(unknown.status).toBe(400);
    expect(unknown.location).toBeUndefined();
    expect(unknown.body).toContain("unknown client_id");

    const { url: badScope, state } = await authorization(config, "openid offline_access accounting.everything");
    const back = await hop(badScope);
    expect(back.status).toBe(303);
    const to = new URL(back.location!);
    expect(to.origin + to.pathname).toBe(REDIRECT);
    expect(to.searchParams.get("error")).toBe("invalid_scope");
    expect(to.searchParams.get("state")).toBe(state);
    expect(xero.tokenEndpointCalls).toBe(0);
  });

  it("asks again when no organisation is ticked, and issues no code", async () => {
    const { xero, config } = await start();
    const { url } = await authorization(config);
    const form = hiddenFields((await hop(url)).body);
    form.set("user", "alice@example.com");
    form.set("action", "allow");
    const again = await hop(url.origin + url.pathname, { form });
    expect(again.status).toBe(400);
    expect(again.location).toBeUndefined();
    expect(again.body).toContain("Choose at least one organisation.");
    expect(again.body).toContain('value="alice@example.com"');
    expect(xero.tokenEndpointCalls).toBe(0);
  });

  it("Cancel sends the browser back with error=access_denied and the state, and creates no grant", async () => {
    const { xero, config } = await start();
    const { url, state } = await authorization(config);
    const back = await consentAtXero(url, { user: "alice@example.com", tenantIds: [xero.organisations[0]!.tenantId], action: "cancel" });
    expect(back.origin + back.pathname).toBe(REDIRECT);
    expect(back.searchParams.get("error")).toBe("access_denied");
    expect(back.searchParams.get("state")).toBe(state);
    expect(back.searchParams.has("code")).toBe(false);
  });
});

describe("fake Xero: the authorization_code grant", () => {
  it("Allow access redirects with a code and the state; openid-client redeems it with the PKCE verifier for tokens of that user and consent", async () => {
    const { xero, config } = await start();
    const [au, nz] = xero.organisations;
    const { url, verifier, state } = await authorization(config);
    const back = await consentAtXero(url, { user: "alice@example.com", tenantIds: [au!.tenantId, nz!.tenantId] });
    expect(back.searchParams.get("state")).toBe(state);
    expect(back.searchParams.get("code")).toMatch(/^[\w-]{20,}$/);

    const tokens = await authorizationCodeGrant(config, back, { expectedState: state, pkceCodeVerifier: verifier });
    expect(xero.codeExchanges).toBe(1);
    expect(tokens.refresh_token).toBeTruthy();
    const claims = decodeJwtClaims(tokens.access_token)!;
    expect(claims["xero_userid"]).toBe("alice@example.com");
    expect(tokens.claims()?.["email"]).toBe("alice@example.com");
    const event = String(claims["authentication_event_id"]);
    const listed = await connections(xero, tokens.access_token, `?authEventId=${event}`);
    expect(listed.map((c) => c["tenantName"]).sort()).toEqual(["Demo Company (AU)", "Demo Company (NZ)"]);
    // The refresh token is a normal one: it rotates.
    const refreshed = await refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
  });

  it("rejects a wrong PKCE verifier with invalid_grant, and the code is spent: the right verifier fails after that", async () => {
    const { xero, config } = await start();
    const { url, verifier } = await authorization(config);
    const back = await consentAtXero(url, { user: "alice@example.com", tenantIds: [xero.organisations[0]!.tenantId] });
    const code = back.searchParams.get("code")!;
    const wrong = await redeem(xero, { code, code_verifier: randomPKCECodeVerifier() });
    expect(wrong).toMatchObject({ status: 400, body: { error: "invalid_grant" } });
    const right = await redeem(xero, { code, code_verifier: verifier });
    expect(right).toMatchObject({ status: 400, body: { error: "invalid_grant" } });
    expect(xero.codeExchanges).toBe(0);
  });

  it("rejects a missing verifier, a reused code and another redirect_uri with invalid_grant", async () => {
    const { xero, config } = await start();
    const tenantIds = [xero.organisations[0]!.tenantId];
    const a = await authorization(config);
    const codeA = (await consentAtXero(a.url, { user: "u@example.com", tenantIds })).searchParams.get("code")!;
    expect(await redeem(xero, { code: codeA })).toMatchObject({ status: 400, body: { error: "invalid_grant" } });

    const b = await authorization(config);
    const codeB = (await consentAtXero(b.url, { user: "u@example.com", tenantIds })).searchParams.get("code")!;
    expect((await redeem(xero, { code: codeB, code_verifier: b.verifier })).status).toBe(200);
    expect(await redeem(xero, { code: codeB, code_verifier: b.verifier })).toMatchObject({ status: 400, body: { error: "invalid_grant" } });

    const c = await authorization(config);
    const codeC = (await consentAtXero(c.url, { user: "u@example.com", tenantIds })).searchParams.get("code")!;
    const elsewhere = await redeem(xero, { code: codeC, code_verifier: c.verifier, redirect_uri: "http://127.0.0.1:9/elsewhere" });
    expect(elsewhere).toMatchObject({ status: 400, body: { error: "invalid_grant" } });
    expect(xero.codeExchanges).toBe(1);
  });

  it("rejects a code redeemed after its lifetime", async () => {
    let now = Date.now();
    const { xero, config } = await start({ now: () => now, authorizationCodeLifetimeSeconds: 300 });
    const { url, verifier } = await authorization(config);
    const code = (await consentAtXero(url, { user: "u@example.com", tenantIds: [xero.organisations[0]!.tenantId] })).searchParams.get(
      "code",
    )!;
    now += 301_000;
    expect(await redeem(xero, { code, code_verifier: verifier })).toMatchObject({ status: 400, body: { error: "invalid_grant" } });
  });

  it("the same user consenting again extends the grant under a new authEventId; a tenant chosen again keeps its connection id", async () => {
    const { xero, config } = await start();
    const [au, nz, uk] = xero.organisations;
    const first = await authorization(config);
    const back1 = await consentAtXero(first.url, { user: "alice@example.com", tenantIds: [au!.tenantId, nz!.tenantId] });
    const t1 = await authorizationCodeGrant(config, back1, { expectedState: first.state, pkceCodeVerifier: first.verifier });
    const before = await connections(xero, t1.access_token);

    const second = await authorization(config);
    const back2 = await consentAtXero(second.url, { user: "alice@example.com", tenantIds: [nz!.tenantId, uk!.tenantId] });
    const t2 = await authorizationCodeGrant(config, back2, { expectedState: second.state, pkceCodeVerifier: second.verifier });
    const event1 = decodeJwtClaims(t1.access_token)!["authentication_event_id"];
    const event2 = decodeJwtClaims(t2.access_token)!["authentication_event_id"];
    expect(event2).not.toBe(event1);
    expect(decodeJwtClaims(t2.access_token)!["global_session_id"]).toBe(decodeJwtClaims(t1.access_token)!["global_session_id"]);

    const all = await connections(xero, t2.access_token);
    expect(all.map((c) => c["tenantName"]).sort()).toEqual(["Demo Company (AU)", "Demo Company (NZ)", "Demo Company (UK)"]);
    const added = await connections(xero, t2.access_token, `?authEventId=${String(event2)}`);
    expect(added.map((c) => c["tenantName"]).sort()).toEqual(["Demo Company (NZ)", "Demo Company (UK)"]);
    const nzBefore = before.find((c) => c["tenantId"] === nz!.tenantId)!;
    const nzAfter = all.find((c) => c["tenantId"] === nz!.tenantId)!;
    expect(nzAfter["id"]).toBe(nzBefore["id"]);
  });
});
