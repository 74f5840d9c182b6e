import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { FakeOrganisation } from "@tokenbroker/fake-xero";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { missingSystemPackage } from "./helpers/system-requirement.js";

// Debian's chromium (CI installs the `chromium` package); driven by playwright-core.
const CHROMIUM = "/usr/bin/chromium";
const noChromium = missingSystemPackage("Chromium", "apt-get install chromium", [CHROMIUM, "--version"]);
const ARTIFACTS = join(import.meta.dirname, "..", "test-artifacts");

let browser: Browser;
let f: BrokerFixture;
let page: Page;

beforeAll(async () => {
  if (noChromium) return;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});
afterAll(async () => {
  await browser?.close();
});
beforeEach(async (test) => {
  if (noChromium) return test.skip();
  // The redirect URI is this server's own /oauth/callback on its real port (the default when none is configured).
  f = await startBroker({ noImport: true });
  page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
});
afterEach(async () => {
  await page?.close();
  await f?.close();
});

/** On the fake Xero's page: sign in as `user`, tick the organisations, click "Allow access". */
async function consent(user: string, orgs: FakeOrganisation[]): Promise<void> {
  await page.waitForURL((url) => url.href.startsWith(`${f.fake.issuer}/identity/connect/authorize`));
  await page.getByLabel("User").fill(user);
  for (const o of orgs) await page.getByLabel(o.tenantName).check();
  await page.getByRole("button", { name: "Allow access" }).click();
  await page.waitForURL((url) => url.href.startsWith(`${f.server.url}/?connected=`));
}

function section(connectionId: string) {
  return page.locator(`section[data-connection-id="${connectionId}"]`);
}

describe("the status page in a real browser", () => {
  it("connect, consent at Xero, see the tenants; lose the grant, see it need re-authorisation, re-authorise, see it active", async () => {
    const [au, nz, uk] = f.fake.organisations as [FakeOrganisation, FakeOrganisation, FakeOrganisation];
    await page.goto(`${f.server.url}/`);
    expect(await page.textContent("body")).toContain("No organisation is connected yet.");

    // Connect an organisation: Xero's sign-in and consent page, then back to the status page.
    await page.getByRole("link", { name: "Connect an organisation" }).click();
    await consent("alice@example.com", [au, nz]);
    const connectionId = new URL(page.url()).searchParams.get("connected")!;
    expect(await page.getByRole("status").textContent()).toContain("Connected alice@example.com: 2 organisations");
    const card = section(connectionId);
    expect(await card.locator(".badge.state").textContent()).toBe("active");
    const rows = await card.locator("tbody tr td:first-child").allTextContents();
    expect(rows.sort()).toEqual(["Demo Company (AU)", "Demo Company (NZ)"]);
    expect(await card.textContent()).not.toContain(uk.tenantName);
    // The little script counts the access token's expiry down.
    const countdown = card.locator(".countdown");
    const before = await countdown.textContent();
    expect(before).toMatch(/^expires in (29m \d+s|30m 0s)$/);
    await expect.poll(() => countdown.textContent(), { timeout: 3000, interval: 200 }).not.toBe(before);

    // Xero revokes the grant; a channel's GetToken triggers the refresh, which gets invalid_grant.
    const stored = (await f.store.tokens.getToken(connectionId))!;
    const grantId = JSON.parse(Buffer.from(stored.accessToken.split(".")[1]!, "base64url").toString())["global_session_id"];
    f.fake.revokeGrant(String(grantId));
    f.clock.set(stored.expiresAt + 1000);
    const refused = await f
      .client()
      .getToken({ selector: { case: "tenantId", value: au.tenantId } })
      .catch((e: unknown) => ConnectError.from(e));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.FailedPrecondition);

    await page.goto(`${f.server.url}/`);
    expect(await card.locator(".badge.state").textContent()).toBe("needs re-authorisation");
    expect(await card.locator(".last-error").textContent()).toContain("invalid_grant");
    expect(await page.locator("#summary").textContent()).toContain("1 needs re-authorisation");
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "status-page-needs-reauthorisation.png"), fullPage: true });

    // Re-authorise: the same user consents again; the same connection is active again.
    await card.getByRole("link", { name: "Re-authorise" }).click();
    await page.waitForURL((url) => url.href.startsWith(`${f.fake.issuer}/identity/connect/authorize`));
    expect(await page.getByLabel("User").inputValue()).toBe("alice@example.com");
    await consent("alice@example.com", [au, nz]);
    expect(new URL(page.url()).searchParams.get("connected")).toBe(connectionId);
    expect(await card.locator(".badge.state").textContent()).toBe("active");
    expect(await card.locator(".last-error").textContent()).toBe("none");
    expect(await card.getByRole("link", { name: "Re-authorise" }).count()).toBe(0);
    const { token } = await f.client().getToken({ selector: { case: "tenantId", value: au.tenantId } });
    expect(token?.connectionId).toBe(connectionId);

    await page.screenshot({ path: join(ARTIFACTS, "status-page.png"), fullPage: true });
    expect(existsSync(join(ARTIFACTS, "status-page.png"))).toBe(true);
    // No secret reached the browser.
    const html = await page.content();
    const now = (await f.store.tokens.getToken(connectionId))!;
    for (const secret of [now.accessToken, now.refreshToken, stored.refreshToken]) expect(html).not.toContain(secret);
  });

  it("Cancel on Xero's consent page shows a clear error page, and the status page still lists nothing", async () => {
    await page.goto(`${f.server.url}/`);
    await page.getByRole("link", { name: "Connect an organisation" }).click();
    await page.waitForURL((url) => url.href.startsWith(`${f.fake.issuer}/identity/connect/authorize`));
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.waitForURL((url) => url.href.startsWith(`${f.server.url}/oauth/callback`));
    expect(await page.locator("#error-title").textContent()).toBe("Xero did not grant access");
    expect(await page.textContent("body")).toContain("Nothing was stored.");
    await page.getByRole("link", { name: "Status page" }).click();
    expect(await page.textContent("body")).toContain("No organisation is connected yet.");
  });
});
