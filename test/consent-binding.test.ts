/**
 * A consent is bound to the browser that started it: the status page's "Connect an organisation" and the URL
 * `tokenbroker connect` prints both leave a cookie in the operator's browser, and the callback completes, or
 * uses up the `state`, only for the browser holding it. A second browser (a cookie-less HTTP client that saw
 * the URLs) can neither complete the consent nor burn its state.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateEncryptionKey } from "../src/crypto/encryption-keys.js";
import type { FakeOrganisation } from "@tokenbroker/fake-xero";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { connectedId, consentAtXero, hop, openInBrowser, startConsent, type Hop } from "./helpers/consent-driver.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { fakeEnv } from "./helpers/serve-process.js";

// `npm test` compiles src to dist/ before vitest runs; run `npm run build` first when running this file alone.
const CLI = join(import.meta.dirname, "..", "dist", "src", "cli", "main.js");
const KEY = generateEncryptionKey();

let f: BrokerFixture;
let au: FakeOrganisation;
const children = new Set<ChildProcess>();

beforeEach(async () => {
  f = await startBroker({ noImport: true });
  [au] = f.fake.organisations as [FakeOrganisation];
});
afterEach(async () => {
  for (const child of children) child.kill("SIGKILL");
  await f.close();
});

/** A refusal to a browser that does not hold the consent's cookie: 403, a page saying so, nothing stored. */
function expectOtherBrowserRefused(r: Hop): void {
  expect(r.status, r.body.slice(0, 300)).toBe(403);
  expect(r.location).toBeUndefined();
  expect(r.body).toMatch(/started in another browser/);
  expect(r.body).toContain("Nothing was stored.");
}

/** The callback of a consent answered with Cancel instead: `error=access_denied` and the same state. */
function cancelled(callback: URL): URL {
  const url = new URL(callback.pathname, callback);
  url.searchParams.set("error", "access_denied");
  url.searchParams.set("state", callback.searchParams.get("state")!);
  return url;
}

/** What the database says of a state: pending (usable), or used. */
function stateRow(state: string): { used_at: number | null; error: string | null; connection_id: string | null } {
  return withRawDatabase(f.dbPath, (db) =>
    db.prepare("SELECT used_at, error, connection_id FROM oauth_states WHERE state = ?").get(state),
  ) as never;
}

describe("the status page's Connect an organisation", () => {
  it("a second browser can neither complete nor burn the consent; the browser that started it still completes it", async () => {
    const { authorizeUrl, cookie } = await startConsent(f.server.url);
    const callback = await consentAtXero(authorizeUrl, { user: "alice@example.com", tenantIds: [au.tenantId] });
    const state = callback.searchParams.get("state")!;

    expectOtherBrowserRefused(await hop(callback)); // the code, without the cookie
    expectOtherBrowserRefused(await hop(cancelled(callback))); // error=access_denied, without the cookie
    expectOtherBrowserRefused(await hop(callback, { cookie: cookie.replace(/=[^;]*/, "=forged") })); // a wrong cookie
    expect(stateRow(state)).toEqual({ used_at: null, error: null, connection_id: null });
    expect(f.fake.codeExchanges).toBe(0);
    expect(await f.store.connections.listConnections()).toEqual([]);

    const id = connectedId(await hop(callback, { cookie }));
    expect((await f.store.connections.listConnections()).map((c) => c.connectionId)).toEqual([id]);
  });

  it("the operator's own Cancel uses the state up", async () => {
    const { authorizeUrl, cookie } = await startConsent(f.server.url);
    const callback = await consentAtXero(authorizeUrl, { user: "alice@example.com", tenantIds: [au.tenantId], action: "cancel" });
    const r = await hop(callback, { cookie });
    expect(r.status).toBe(400);
    expect(r.body).toMatch(/Xero did not grant access \(access_denied/);
    expect(stateRow(callback.searchParams.get("state")!).used_at).not.toBeNull();
  });
});

describe("tokenbroker connect", () => {
  function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return fakeEnv(f.fake, {
      TOKENBROKER_DB: f.dbPath,
      TOKENBROKER_ENCRYPTION_KEY: KEY,
      TOKENBROKER_REDIRECT_URI: `${f.server.url}/oauth/callback`,
      ...extra,
    });
  }

  function startConnect() {
    const child = spawn(process.execPath, [CLI, "connect"], { env: env(), stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      child.on("close", (code) => resolve({ code, stdout, stderr })),
    );
    const printedUrl = async (): Promise<URL> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const m = /^ {2}(http\S+)$/m.exec(stdout);
        if (m) return new URL(m[1]!);
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no URL printed; stderr: ${stderr}`);
        await delay(25);
      }
    };
    return { child, exited, printedUrl };
  }

  it("the printed URL binds the consent to the operator's browser: a second browser can neither complete nor burn it", async () => {
    const cli = startConnect();
    const printed = await cli.printedUrl();
    // The operator's browser opens the printed URL and lands on Xero's consent page, holding the broker's cookie.
    const operator = await openInBrowser(printed);
    expect(operator.url.pathname).toBe("/identity/connect/authorize");
    const callback = await consentAtXero(operator.url, { user: "dave@example.com", tenantIds: [au.tenantId] });
    const state = callback.searchParams.get("state")!;

    // Someone else who saw the URLs: the callback, and a Cancel of the same state, without the cookie.
    expectOtherBrowserRefused(await hop(callback));
    expectOtherBrowserRefused(await hop(cancelled(callback)));
    expect(stateRow(state)).toEqual({ used_at: null, error: null, connection_id: null });
    expect(f.fake.codeExchanges).toBe(0);
    // The printed URL is good once: opened again (by anyone), it no longer leads to Xero nor sets a cookie.
    const again = await hop(printed);
    expect(again.status).toBe(410);
    expect(again.setCookie).toEqual([]);
    expect(again.body).toMatch(/already been opened/);

    const id = connectedId(await hop(callback, { cookie: operator.cookie }));
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`connection ${id}  dave@example.com\n`);
  });

  it("a second browser that opens the printed URL first takes it; the operator's browser is then told so, and Cancel in the operator's browser ends the command", async () => {
    const cli = startConnect();
    const printed = await cli.printedUrl();
    const first = await openInBrowser(printed);
    expect(first.url.pathname).toBe("/identity/connect/authorize");
    const second = await openInBrowser(printed);
    expect(second.page.status).toBe(410);
    const callback = await consentAtXero(first.url, { user: "dave@example.com", tenantIds: [au.tenantId], action: "cancel" });
    expect((await hop(callback, { cookie: first.cookie })).status).toBe(400);
    const result = await cli.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/the consent failed, nothing stored: access_denied/);
  });

  it("an unknown or forged link is refused without a cookie", async () => {
    const r = await hop(`${f.server.url}/connect/claim?t=${"A".repeat(43)}`);
    expect(r.status).toBe(410);
    expect(r.setCookie).toEqual([]);
    expect((await hop(`${f.server.url}/connect/claim`)).status).toBe(410);
  });
});
