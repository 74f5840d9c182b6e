import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateEncryptionKey, parseEncryptionKey } from "../src/crypto/encryption-keys.js";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import type { FakeOrganisation } from "@tokenbroker/fake-xero";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import { UpstreamError } from "../src/upstream/identity-server.js";
import { startBroker, tempDir, type BrokerFixture } from "./helpers/broker-fixture.js";
import { connectedId, connectOverHttp, consentAtXero, hop, openInBrowser } from "./helpers/consent-driver.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { fakeEnv, freePort } from "./helpers/serve-process.js";

// `npm test` compiles src to dist/ before vitest runs; run `npm run build` first when running this file alone.
const CLI = join(import.meta.dirname, "..", "dist", "src", "cli", "main.js");

interface Cli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

const children = new Set<ChildProcess>();

function start(args: string[], env: NodeJS.ProcessEnv): Cli {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    }),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function run(args: string[], env: NodeJS.ProcessEnv) {
  const cli = start(args, env);
  const result = await Promise.race([cli.exited, delay(15_000).then(() => undefined)]);
  if (!result) throw new Error(`tokenbroker ${args.join(" ")} did not exit; stderr: ${cli.stderr()}`);
  return result;
}

/** Waits until the CLI printed its one-time link, and opens it in a "browser": Xero's consent page, and the browser's cookie. */
async function openPrintedUrl(cli: Cli): Promise<{ url: URL; cookie: string; printed: URL }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = /^ {2}(http\S+)$/m.exec(cli.stdout());
    if (m) {
      const printed = new URL(m[1]!);
      const opened = await openInBrowser(printed);
      if (opened.page.status !== 200) throw new Error(`the printed URL answered ${opened.page.status}: ${opened.page.body.slice(0, 300)}`);
      return { url: opened.url, cookie: opened.cookie, printed };
    }
    if (Date.now() > deadline || cli.child.exitCode !== null) throw new Error(`no URL printed; stderr: ${cli.stderr()}`);
    await delay(25);
  }
}

let f: BrokerFixture;
let au: FakeOrganisation;
let nz: FakeOrganisation;
let uk: FakeOrganisation;

beforeEach(async () => {
  // The in-process broker seals with the CLI's key: with a key configured, a clear-text token set is refused.
  f = await startBroker({ noImport: true, encryption: createTokenCipher([parseEncryptionKey(KEY, "test key")]) });
  [au, nz, uk] = f.fake.organisations as [FakeOrganisation, FakeOrganisation, FakeOrganisation];
});
afterEach(async () => {
  for (const child of children) child.kill("SIGKILL");
  await f.close();
});

/** The key the CLI and the in-process broker of the fixture seal tokens with. */
const KEY = generateEncryptionKey();

/** A clean environment pointing at the fake Xero: nothing of the developer's settings leaks in. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return fakeEnv(f.fake, { TOKENBROKER_DB: f.dbPath, TOKENBROKER_ENCRYPTION_KEY: KEY, ...extra });
}

async function connect(user: string, orgs: FakeOrganisation[]): Promise<string> {
  return connectedId(await connectOverHttp(f.server.url, { user, tenantIds: orgs.map((o) => o.tenantId) }));
}

/** Every secret the broker holds, to check that no output carries one. */
async function secrets(): Promise<string[]> {
  const all: string[] = [f.fake.clientSecret];
  for (const c of await f.store.connections.listConnections()) {
    const t = await f.store.tokens.getToken(c.connectionId);
    all.push(t!.accessToken, t!.refreshToken, t!.idToken ?? "");
  }
  const verifiers = withRawDatabase(f.dbPath, (db) => db.prepare("SELECT code_verifier FROM oauth_states").all()) as Array<{
    code_verifier: string;
  }>;
  return [...all, ...verifiers.map((v) => v.code_verifier)].filter((s) => s !== "");
}

describe("tokenbroker connections and tenants", () => {
  it("list every connection and tenant with state, expiry and last refresh, as text and --json, and print no secret", async () => {
    const alice = await connect("alice@example.com", [au, nz]);
    f.clock.advance(1000); // listed in the order they were connected
    const bob = await connect("bob@example.com", [nz, uk]);
    await f.store.connections.markNeedsReauthorization(bob, "refresh: the refresh token was rejected (invalid_grant)");

    const text = await run(["connections"], env());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^connection ${alice}  active  alice@example.com$`, "m"));
    expect(text.stdout).toMatch(new RegExp(`^connection ${bob}  needs-re-authorisation  bob@example.com$`, "m"));
    expect(text.stdout).toMatch(/^ {2}access token {3}\d{4}-\d\d-\d\dT.*Z \(expires in \d+m \d+s\), version 1$/m);
    expect(text.stdout).toMatch(/^ {2}last refresh {3}never$/m);
    expect(text.stdout).toMatch(/^ {2}last error {5}refresh: the refresh token was rejected \(invalid_grant\)$/m);
    expect(text.stdout).toMatch(new RegExp(`^ {2}tenant ${uk.tenantId}  Demo Company \\(UK\\)$`, "m"));

    const json = await run(["connections", "--json"], env());
    const list = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    expect(list.map((c) => [c["connectionId"], c["state"], c["userName"]])).toEqual([
      [alice, "active", "alice@example.com"],
      [bob, "needs_reauthorization", "bob@example.com"],
    ]);
    expect(list[0]).toMatchObject({ lastRefreshAt: null, lastError: null, version: 1 });
    expect(Date.parse(String(list[0]!["accessTokenExpiresAt"]))).toBeGreaterThan(Date.now());

    const tenants = await run(["tenants"], env());
    expect(tenants.code).toBe(0);
    const rows = tenants.stdout.trim().split("\n");
    expect(rows[0]).toMatch(/^TENANT\s+STATE\s+NAME\s+CONNECTION\s+CONNECTION STATE\s+USER\s+LAST CHECKED$/);
    expect(rows.filter((r) => r.startsWith(nz.tenantId))).toHaveLength(2); // reachable through both grants
    expect(rows.find((r) => r.startsWith(uk.tenantId))).toMatch(
      new RegExp(`active\\s+Demo Company \\(UK\\)\\s+${bob}\\s+needs-re-authorisation\\s+bob@example.com`),
    );
    const tenantsJson = JSON.parse((await run(["tenants", "--json"], env())).stdout) as Array<Record<string, unknown>>;
    expect(tenantsJson).toHaveLength(4);
    expect(tenantsJson.find((t) => t["tenantId"] === au.tenantId)).toMatchObject({
      state: "active",
      connectionId: alice,
      tenantName: "Demo Company (AU)",
    });

    const everything = text.stdout + text.stderr + json.stdout + tenants.stdout + tenants.stderr;
    for (const secret of await secrets()) expect(everything).not.toContain(secret);
  });
});

describe("tokenbroker disconnect and revoke against the fake Xero", () => {
  it("disconnect removes one tenant at Xero (DELETE /connections/{id}) and locally; a tenant of two grants needs --connection", async () => {
    const alice = await connect("alice@example.com", [au, nz]);
    const bob = await connect("bob@example.com", [nz]);

    const r = await run(["disconnect", au.tenantId], env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`tenant ${au.tenantId}  Demo Company (AU)  disconnected at Xero; removed from connection ${alice}\n`);
    const [summary] = (await f.store.connections.listConnections()).filter((c) => c.connectionId === alice);
    expect(summary!.tenants.map((t) => t.tenantId)).toEqual([nz.tenantId]);
    const atXero = await f.identity.listConnections((await f.store.tokens.getToken(alice))!.accessToken);
    expect(atXero.map((c) => c.tenantId)).toEqual([nz.tenantId]);

    const ambiguous = await run(["disconnect", nz.tenantId], env());
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/reachable through 2 connections .*--connection/);
    const chosen = await run(["disconnect", nz.tenantId, "--connection", bob], env());
    expect(chosen.code, chosen.stderr).toBe(0);
    expect((await f.store.tokens.getToken(bob))!.tenantIds).toEqual([]);
    expect((await f.store.tokens.getToken(alice))!.tenantIds).toEqual([nz.tenantId]);

    const unknown = await run(["disconnect", "no-such-tenant"], env());
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/tenant no-such-tenant is not stored/);
  });

  it("revoke revokes the grant at Xero's revocation endpoint and removes the connection; its refresh token is dead", async () => {
    const alice = await connect("alice@example.com", [au]);
    const bob = await connect("bob@example.com", [uk]);
    const refreshToken = (await f.store.tokens.getToken(alice))!.refreshToken;

    const r = await run(["revoke", alice], env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      `connection ${alice}  alice@example.com  revoked at Xero; removed with 1 tenant\n  tenant ${au.tenantId}  Demo Company (AU)\n`,
    );
    expect((await f.store.connections.listConnections()).map((c) => c.connectionId)).toEqual([bob]);
    const refused = await f.identity.refresh(refreshToken).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(UpstreamError);
    expect((refused as UpstreamError).kind).toBe("invalid_grant");
    for (const secret of [refreshToken, f.fake.clientSecret]) expect(r.stdout + r.stderr).not.toContain(secret);

    const again = await run(["revoke", alice], env());
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/is not stored/);
  });
});

describe("tokenbroker connect", () => {
  it("without a server, listens on the redirect URI itself, prints the URL, waits for the consent and lists the tenants", async () => {
    const dir = tempDir();
    try {
      const db = join(dir.path, "connect.db");
      const redirect = `http://127.0.0.1:${await freePort()}/oauth/callback`;
      const cli = start(["connect", "--db", db], env({ TOKENBROKER_REDIRECT_URI: redirect }));
      const { url, cookie, printed } = await openPrintedUrl(cli);
      expect(cli.stdout()).toMatch(/^Open this URL in a browser, sign in to Xero and choose the organisations:/);
      expect(printed.origin).toBe(new URL(redirect).origin); // the command's own listener serves the link
      expect(url.searchParams.get("redirect_uri")).toBe(redirect);
      const callback = await consentAtXero(url, { user: "carol@example.com", tenantIds: [au.tenantId, uk.tenantId] });
      expect(callback.href.startsWith(redirect)).toBe(true);
      expect((await hop(callback)).status).toBe(403); // without the cookie of the browser that opened the link
      const back = await hop(callback, { cookie });
      expect(back.status, back.body).toBe(303);
      const done = await hop(new URL(back.location!, redirect));
      expect(done.body).toContain("return to the terminal");

      const result = await cli.exited;
      expect(result.code, result.stderr).toBe(0);
      const store = openSqliteStore({ path: db, encryption: createTokenCipher([parseEncryptionKey(KEY, "test key")]) });
      try {
        const [c] = await store.connections.listConnections();
        expect(c).toMatchObject({ xeroUserId: "carol@example.com", state: "active" });
        expect(result.stdout).toContain(`connection ${c!.connectionId}  carol@example.com\n`);
        expect(result.stdout).toContain(`  tenant ${au.tenantId}  Demo Company (AU)\n`);
        expect(result.stdout).toContain(`  tenant ${uk.tenantId}  Demo Company (UK)\n`);
        const t = await store.tokens.getToken(c!.connectionId);
        for (const secret of [t!.accessToken, t!.refreshToken]) expect(result.stdout + result.stderr).not.toContain(secret);
        // The stored consent is audited with its connection and tenants.
        const audited = (await store.auditLog.read({ limit: 100 })).filter((e) => e.action === "connect");
        expect(audited).toEqual([
          expect.objectContaining({
            connectionId: c!.connectionId,
            outcome: "ok",
            detail: `tenants=${[au.tenantId, uk.tenantId].sort().join(",")}`,
          }),
        ]);
      } finally {
        await store.close();
      }
    } finally {
      dir.cleanup();
    }
  });

  it("with tokenbroker serve on the redirect URI, waits for the server to complete the consent (same database)", async () => {
    const cli = start(["connect"], env({ TOKENBROKER_REDIRECT_URI: `${f.server.url}/oauth/callback` }));
    const { url, cookie, printed } = await openPrintedUrl(cli);
    expect(printed.origin).toBe(f.server.url); // the running broker serves the link
    const callback = await consentAtXero(url, { user: "dave@example.com", tenantIds: [nz.tenantId] });
    const back = await hop(callback, { cookie }); // bound to the browser that opened the printed link
    const id = connectedId(back);
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain("served by the running tokenbroker");
    expect(result.stdout).toContain(`connection ${id}  dave@example.com\n  tenant ${nz.tenantId}  Demo Company (NZ)\n`);
  });

  it("Cancel at Xero ends it with exit status 1 and stores nothing", async () => {
    const cli = start(["connect"], env({ TOKENBROKER_REDIRECT_URI: `${f.server.url}/oauth/callback` }));
    const { url, cookie } = await openPrintedUrl(cli);
    const callback = await consentAtXero(url, { user: "dave@example.com", tenantIds: [nz.tenantId], action: "cancel" });
    expect((await hop(callback, { cookie })).status).toBe(400);
    const result = await cli.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/the consent failed, nothing stored: access_denied/);
    expect(await f.store.connections.listConnections()).toEqual([]);
  });
});
