/**
 * Failed admin sign-ins are throttled per client address and audited (never with the key tried); a consent
 * stored by the broker writes an audit entry naming the connection and its tenants; the one-time link of
 * `tokenbroker connect` is reachable without an admin key.
 */
import { request } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clientOf, createSignInThrottle } from "../src/auth/sign-in-throttle.js";
import type { FakeOrganisation } from "@tokenbroker/fake-xero";
import { consentAtXero, hop, openInBrowser } from "./helpers/consent-driver.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";

/** POST /login from a given loopback source address (127.0.0.1 unless told), as a browser's form would. */
function postLogin(
  url: string,
  key: string,
  localAddress = "127.0.0.1",
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const body = new URLSearchParams({ key, next: "/" }).toString();
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/login`,
      {
        method: "POST",
        localAddress,
        headers: { "content-type": "application/x-www-form-urlencoded", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (s: string) => (text += s));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("admin sign-in", () => {
  let f: SecureBrokerFixture;
  let admin: string;
  beforeEach(async () => {
    f = await startSecureBroker({ noImport: true });
    admin = f.createKey("ops", "*", { admin: true });
  });
  afterEach(async () => {
    await f?.close();
  });

  it("after 5 failures from one address, sign-ins from it get 429 with Retry-After (even with the right key); other addresses are not held up", async () => {
    const tried = Array.from({ length: 5 }, (_, i) => `tbk_wrong${i}${"x".repeat(38)}`);
    for (const key of tried) {
      const r = await postLogin(f.server.url, key);
      expect(r.status).toBe(401);
      expect(r.body).toContain("That is not a valid admin API key.");
    }
    const held = await postLogin(f.server.url, admin);
    expect(held.status).toBe(429);
    const retryAfter = Number(held.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThanOrEqual(50);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(held.body).toMatch(/Too many failed sign-ins from this address/);
    expect(held.headers["set-cookie"]).toBeUndefined();

    const elsewhere = await postLogin(f.server.url, admin, "127.0.0.2");
    expect(elsewhere.status).toBe(303);

    // Every failed sign-in is audited with the client's address, never with the key tried; so is the lock.
    const entries = (await f.auditEntries()).filter((e) => e.action.startsWith("login"));
    const failed = entries.filter((e) => e.action === "login" && e.outcome === "failed");
    expect(failed).toHaveLength(5);
    for (const e of failed) expect(e.detail).toMatch(/^client=127\.0\.0\.1\b/);
    expect(entries.filter((e) => e.outcome === "locked").map((e) => e.detail)).toEqual(["client=127.0.0.1 for=60s"]);
    expect(entries.filter((e) => e.outcome === "ok").map((e) => e.actor)).toEqual(["ops"]);
    const everything = JSON.stringify(await f.auditEntries());
    for (const key of [...tried, admin]) expect(everything).not.toContain(key);
  });

  it("a bearer key that is not valid on the admin pages counts as a failed sign-in too", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${f.server.url}/`, { headers: { authorization: `Bearer tbk_nope${i}` } });
      expect(r.status).toBe(401);
    }
    const held = await fetch(`${f.server.url}/`, { headers: { authorization: `Bearer ${admin}` } });
    expect(held.status).toBe(429);
    expect(Number(held.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("the link tokenbroker connect prints needs no admin key: an unknown one is 410, not a sign-in form", async () => {
    const r = await hop(`${f.server.url}/connect/claim?t=${"A".repeat(43)}`);
    expect(r.status).toBe(410);
  });

  it("a consent stored through the status page writes an audit entry naming the connection and its tenants", async () => {
    const session = await postLogin(f.server.url, admin);
    const cookie = /^(tb_session=[^;]+)/.exec(String((session.headers["set-cookie"] as string[])[0]))![1]!;
    const [au, nz] = f.fake.organisations as [FakeOrganisation, FakeOrganisation];
    const jar = new Map([cookie.split("=") as [string, string]]);
    const browser = await openInBrowser(`${f.server.url}/connect`, jar);
    expect(browser.url.pathname).toBe("/identity/connect/authorize");
    const callback = await consentAtXero(browser.url, { user: "alice@example.com", tenantIds: [au.tenantId, nz.tenantId] });
    const back = await hop(callback, { cookie: browser.cookie });
    expect(back.status, back.body.slice(0, 300)).toBe(303);
    const [connection] = await f.store.connections.listConnections();

    const consent = (await f.auditEntries()).filter((e) => e.action === "consent");
    expect(consent).toHaveLength(1);
    expect(consent[0]).toMatchObject({ actor: "xero:alice@example.com", outcome: "ok", connectionId: connection!.connectionId });
    expect(consent[0]!.detail).toContain(`tenants=${[au.tenantId, nz.tenantId].sort().join(",")}`);
    expect(consent[0]!.detail).toMatch(/\bnew\b/);
  });
});

describe("the sign-in throttle", () => {
  it("locks a client after 5 failures within a minute, for 60 s, then longer each time", () => {
    let now = 1_000_000;
    const throttle = createSignInThrottle({ now: () => now });
    for (let i = 0; i < 4; i++) expect(throttle.failed("a")).toBe(0);
    expect(throttle.retryAfterMs("a")).toBe(0);
    expect(throttle.failed("a")).toBe(60_000);
    expect(throttle.retryAfterMs("a")).toBe(60_000);
    expect(throttle.retryAfterMs("b")).toBe(0);
    now += 60_000;
    expect(throttle.retryAfterMs("a")).toBe(0);
    for (let i = 0; i < 4; i++) throttle.failed("a");
    expect(throttle.failed("a")).toBe(120_000);
    now += 120_000;
    for (let i = 0; i < 4; i++) throttle.failed("a");
    expect(throttle.failed("a")).toBe(240_000);
  });

  it("failures spread over more than a minute do not lock; a success forgets the client", () => {
    let now = 0;
    const throttle = createSignInThrottle({ now: () => now });
    for (let i = 0; i < 20; i++) {
      expect(throttle.failed("a")).toBe(0);
      now += 15_001; // 4 in any minute at most
    }
    for (let i = 0; i < 4; i++) throttle.failed("b");
    throttle.succeeded("b");
    expect(throttle.failed("b")).toBe(0);
  });

  it("the lock stops growing at the maximum, and a client quiet for that long starts over", () => {
    let now = 0;
    const throttle = createSignInThrottle({ now: () => now, maxLockMs: 300_000 });
    const lock = () => {
      for (let i = 0; i < 4; i++) throttle.failed("a");
      const ms = throttle.failed("a");
      now += ms;
      return ms;
    };
    expect([lock(), lock(), lock(), lock(), lock()]).toEqual([60_000, 120_000, 240_000, 300_000, 300_000]);
    now += 300_000;
    expect(lock()).toBe(60_000);
  });

  it("holds at most maxClients addresses: a flood of addresses evicts the oldest, never grows the table", () => {
    const throttle = createSignInThrottle({ maxClients: 1000 });
    for (let i = 0; i < 50_000; i++) throttle.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(throttle.size).toBe(1000);
  });
});

describe("clientOf", () => {
  it.for([
    ["127.0.0.1", "127.0.0.1"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"],
    ["2001:0db8::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
  ])("%s is throttled as %s", ([address, client]) => {
    expect(clientOf(address)).toBe(client);
  });
});
