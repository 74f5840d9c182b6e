/**
 * The admin pages behind `requireAdmin`: a browser gets a login form once and
 * then an HttpOnly, SameSite=Strict session cookie; scripts send an admin key;
 * client keys, revoked keys and ended sessions get nothing.
 */
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { adminOf } from "../src/auth/require-admin.js";
import { sendJson, type HttpRoute } from "../src/server/http-routes.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";

/** Stand-ins for the status page and /connect: they say who they were served to. */
const pages: HttpRoute[] = [
  { method: "GET", path: "/", handle: (req, res) => sendJson(res, 200, { page: "status", admin: adminOf(req)?.name }) },
  { method: "GET", path: "/connect", handle: (req, res) => sendJson(res, 200, { page: "connect", admin: adminOf(req)?.name }) },
  { method: "POST", path: "/connections/*", handle: (req, res) => sendJson(res, 200, { page: "disconnect", admin: adminOf(req)?.name }) },
  { method: "GET", path: "/connect/callback", handle: (_req, res) => sendJson(res, 200, { page: "callback" }) },
];

const html = { accept: "text/html,application/xhtml+xml" };

describe("admin pages", () => {
  let f: SecureBrokerFixture;
  let admin: string;
  let client: string;
  beforeEach(async () => {
    f = await startSecureBroker({ server: { httpRoutes: pages } });
    admin = f.createKey("ops", "*", { admin: true });
    client = f.createKey("channel", "*");
  });
  afterEach(async () => {
    await f?.close();
  });

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${f.server.url}${path}`, { headers, redirect: "manual" });
  const login = (key: string, next = "/") =>
    fetch(`${f.server.url}/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ key, next }).toString(),
      redirect: "manual",
    });
  const sessionOf = (res: Response) => /^(tb_session=[^;]+)/.exec(res.headers.get("set-cookie") ?? "")?.[1];

  it("a browser without a session gets a login form, not the page", async () => {
    for (const path of ["/", "/connect"]) {
      const res = await get(path, html);
      expect(res.status).toBe(401);
      expect(res.headers.get("content-type")).toMatch(/text\/html/);
      const body = await res.text();
      expect(body).toMatch(/<form method="post" action="\/login">/);
      expect(body).toContain(`name="next" value="${path}"`);
      expect(body).not.toMatch(/status|"page"/);
    }
    // A script gets JSON and a WWW-Authenticate challenge.
    const json = await get("/");
    expect(json.status).toBe(401);
    expect(json.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(((await json.json()) as { code: string }).code).toBe("unauthenticated");
  });

  it("an admin key as a bearer token opens the pages; a client key is refused with 403", async () => {
    const ok = await get("/connect", { authorization: `Bearer ${admin}` });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ page: "connect", admin: "ops" });
    // Admin actions are audited with the key's name; a refused one is not an action.
    const actions = (await f.auditEntries()).map((e) => [e.actor, e.action]);
    expect(actions).toContainEqual(["ops", "connect"]);
    const denied = await get("/", { authorization: `Bearer ${client}` });
    expect(denied.status).toBe(403);
    const post = await fetch(`${f.server.url}/connections/abc/disconnect`, {
      method: "POST",
      headers: { authorization: `Bearer ${client}` },
    });
    expect(post.status).toBe(403);
    expect((await f.auditEntries()).filter((e) => e.actor === "channel")).toEqual([]);
  });

  it("logging in once gives an HttpOnly, SameSite=Strict session cookie that opens every admin page", async () => {
    const res = await login(admin, "/connect");
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/connect");
    const setCookie = res.headers.get("set-cookie") ?? "";
    expect(setCookie).toMatch(/^tb_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    expect(setCookie).not.toContain(admin);
    expect(setCookie).not.toMatch(/Secure/); // cleartext: a Secure cookie would never come back
    const cookie = sessionOf(res)!;
    for (const path of ["/", "/connect"]) {
      const page = await get(path, { ...html, cookie });
      expect(page.status).toBe(200);
      expect(((await page.json()) as { admin: string }).admin).toBe("ops");
    }
    // A made-up session id opens nothing.
    expect((await get("/", { cookie: `tb_session=${"x".repeat(43)}` })).status).toBe(401);
    // The sign-in is audited, with the key's name.
    expect((await f.auditEntries()).some((e) => e.action === "login" && e.actor === "ops")).toBe(true);
  });

  it("a wrong key or a client key cannot log in; `next` cannot lead to another site", async () => {
    for (const key of ["", "tbk_nonsense", client]) {
      const res = await login(key);
      expect(res.status).toBe(401);
      expect(res.headers.get("set-cookie")).toBeNull();
      expect(await res.text()).toMatch(/not a valid admin API key/);
    }
    for (const next of ["//evil.example/", "https://evil.example/", "/\\evil.example"]) {
      const res = await login(admin, next);
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/");
    }
    const big = await fetch(`${f.server.url}/login`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `key=${"a".repeat(10_000)}`,
    });
    expect(big.status).toBe(400);
  });

  it("logging out, or revoking the key, ends the session", async () => {
    const cookie = sessionOf(await login(admin))!;
    expect((await get("/", { cookie })).status).toBe(200);
    const out = await fetch(`${f.server.url}/logout`, { method: "POST", headers: { cookie }, redirect: "manual" });
    expect(out.status).toBe(303);
    expect(out.headers.get("set-cookie")).toMatch(/^tb_session=; .*Max-Age=0/);
    expect((await get("/", { cookie })).status).toBe(401);

    const second = sessionOf(await login(admin))!;
    expect((await get("/", { cookie: second })).status).toBe(200);
    await f.keys.revoke("ops", Date.now());
    await delay(600); // the key cache lives 500 ms
    expect((await get("/", { cookie: second })).status).toBe(401);
  });

  it("probes, metrics and OAuth callbacks stay public", async () => {
    expect((await get("/healthz")).status).toBe(200);
    expect((await get("/metrics")).status).toBe(200);
    expect((await get("/connect/callback")).status).toBe(200);
  });
});

describe("the real status page and /connect", () => {
  let f: SecureBrokerFixture;
  afterEach(async () => {
    await f?.close();
  });

  it("need an admin key or session; the OAuth callback stays public", async () => {
    f = await startSecureBroker();
    const admin = f.createKey("ops", "*", { admin: true });
    const client = f.createKey("channel", "*");
    for (const path of ["/", "/connect"]) {
      const anonymous = await fetch(`${f.server.url}${path}`, { headers: html, redirect: "manual" });
      expect(anonymous.status, path).toBe(401);
      expect(await anonymous.text()).toMatch(/action="\/login"/);
      const asClient = await fetch(`${f.server.url}${path}`, { headers: { authorization: `Bearer ${client}` }, redirect: "manual" });
      expect(asClient.status, path).toBe(403);
    }
    const page = await fetch(`${f.server.url}/`, { headers: { ...html, authorization: `Bearer ${admin}` } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(f.connectionId);
    // The callback answers (an error page: no consent was started), not the login form.
    const callback = await fetch(`${f.server.url}/oauth/callback?state=x&code=y`, { headers: html, redirect: "manual" });
    expect(callback.status).toBe(400);
    expect(await callback.text()).not.toMatch(/action="\/login"/);
  });
});
