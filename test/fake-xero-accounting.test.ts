import { afterEach, describe, expect, it } from "vitest";
import { startFakeXero, type FakeXero, type FakeXeroOptions } from "@tokenbroker/fake-xero";

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

/** A grant with `names` as tenants and an access token for it. */
async function connected(xero: FakeXero, names: string[]): Promise<{ token: string; tenantIds: string[] }> {
  const grant = xero.addGrant({ tenants: names.map((tenantName) => ({ tenantName })) });
  const res = await fetch(`${xero.issuer}/connect/token`, {
    method: "POST",
    headers: {
      Authorization: `Basic ${Buffer.from(`${xero.clientId}:${xero.clientSecret}`).toString("base64")}`,
      "Content-Type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: grant.refreshToken }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { access_token: string };
  return { token: body.access_token, tenantIds: grant.tenants.map((t) => t.tenantId) };
}

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  text: string;
}

/** Calls the accounting API (`path` under /api.xro/2.0/) as a Xero SDK does. */
async function api(
  xero: FakeXero,
  path: string,
  auth: { token?: string; tenantId?: string },
  init: { method?: string; body?: unknown } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (auth.token !== undefined) headers["Authorization"] = `Bearer ${auth.token}`;
  if (auth.tenantId !== undefined) headers["xero-tenant-id"] = auth.tenantId;
  if (init.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${xero.apiUrl}/api.xro/2.0/${path}`, {
    method: init.method ?? "GET",
    headers,
    ...(init.body === undefined ? {} : { body: typeof init.body === "string" ? init.body : JSON.stringify(init.body) }),
  });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // plain text (404) or empty
  }
  return { status: res.status, headers: res.headers, body, text };
}

function limitHeaders(a: Answer): Record<string, string | null> {
  return {
    min: a.headers.get("x-minlimit-remaining"),
    day: a.headers.get("x-daylimit-remaining"),
    app: a.headers.get("x-appminlimit-remaining"),
    problem: a.headers.get("x-rate-limit-problem"),
    retryAfter: a.headers.get("retry-after"),
  };
}

describe("fake Xero accounting API: endpoints", () => {
  it("answers Organisation, Contacts and Invoices in Xero's envelope, with the limit headers", async () => {
    const xero = await start();
    const { token, tenantIds } = await connected(xero, ["Demo Company (AU)"]);
    const tenantId = tenantIds[0]!;

    const org = await api(xero, "Organisation", { token, tenantId });
    expect(org.status).toBe(200);
    expect(org.body).toMatchObject({ Status: "OK", DateTimeUTC: expect.stringMatching(/^\/Date\(\d+\+0000\)\/$/) });
    expect(org.body["Organisations"]).toEqual([
      expect.objectContaining({
        OrganisationID: tenantId,
        Name: "Demo Company (AU)",
        BaseCurrency: "AUD",
        CountryCode: "AU",
        OrganisationStatus: "ACTIVE",
      }),
    ]);
    expect(limitHeaders(org)).toEqual({ min: "59", day: "4999", app: "9999", problem: null, retryAfter: null });

    const contacts = await api(xero, "Contacts", { token, tenantId });
    const list = contacts.body["Contacts"] as Array<Record<string, unknown>>;
    expect(list.length).toBeGreaterThan(0);
    expect(list[0]).toMatchObject({ ContactID: expect.any(String), Name: expect.any(String), ContactStatus: "ACTIVE" });
    expect(limitHeaders(contacts)).toMatchObject({ min: "58", day: "4998", app: "9998" });

    // Resource names match in any case, as at Xero.
    const invoices = await api(xero, "invoices", { token, tenantId });
    expect(invoices.status).toBe(200);
    expect(invoices.body["Invoices"]).toEqual([expect.objectContaining({ Type: "ACCREC", Status: "DRAFT", CurrencyCode: "AUD" })]);
    expect(xero.apiUsage(tenantId)).toMatchObject({ calls: 3, inFlight: 0, maxInFlight: 1 });
  });

  it("creates invoices, finds them by id or number, and keeps each tenant's data apart", async () => {
    const xero = await start();
    const { token, tenantIds } = await connected(xero, ["Org A", "Org B"]);
    const [a, b] = tenantIds as [string, string];

    const created = await api(
      xero,
      "Invoices",
      { token, tenantId: a },
      {
        method: "POST",
        body: {
          Invoices: [
            {
              Type: "ACCREC",
              Contact: { Name: "New Customer Ltd" },
              Reference: "ref-1",
              LineItems: [
                { Description: "Widgets", Quantity: 3, UnitAmount: 12.5, AccountCode: "200" },
                { Description: "Delivery", UnitAmount: 10 },
              ],
            },
          ],
        },
      },
    );
    expect(created.status, created.text).toBe(200);
    const invoice = (created.body["Invoices"] as Array<Record<string, unknown>>)[0]!;
    expect(invoice).toMatchObject({ Type: "ACCREC", Reference: "ref-1", Status: "DRAFT", SubTotal: 47.5, Total: 47.5, AmountDue: 47.5 });
    expect(invoice["Contact"]).toMatchObject({ Name: "New Customer Ltd", ContactID: expect.any(String) });
    expect(limitHeaders(created)).toMatchObject({ min: "59", day: "4999" });

    const byId = await api(xero, `Invoices/${String(invoice["InvoiceID"])}`, { token, tenantId: a });
    expect(byId.body["Invoices"]).toEqual([invoice]);
    const byNumber = await api(xero, `Invoices/${String(invoice["InvoiceNumber"])}`, { token, tenantId: a });
    expect(byNumber.body["Invoices"]).toEqual([invoice]);
    expect(xero.invoices(a).map((i) => i.InvoiceID)).toContain(invoice["InvoiceID"]);
    expect((await api(xero, "Contacts", { token, tenantId: a })).body["Contacts"]).toEqual(
      expect.arrayContaining([expect.objectContaining({ Name: "New Customer Ltd" })]),
    );

    // The other tenant has its own books.
    const elsewhere = await api(xero, `Invoices/${String(invoice["InvoiceID"])}`, { token, tenantId: b });
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.text).toBe("The resource you're looking for cannot be found");
    expect(limitHeaders(elsewhere).min).toBe("59");
    expect(xero.invoices(b).map((i) => i.InvoiceID)).not.toContain(invoice["InvoiceID"]);
  });

  it("refuses an invalid invoice with Xero's ValidationException and creates none of the batch", async () => {
    const xero = await start();
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;
    const before = (await api(xero, "Invoices", { token, tenantId })).body["Invoices"] as unknown[];

    const bad = await api(
      xero,
      "Invoices",
      { token, tenantId },
      { method: "PUT", body: { Invoices: [{ Type: "ACCREC", Contact: { Name: "Fine" } }, { Type: "BOGUS" }] } },
    );
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ ErrorNumber: 10, Type: "ValidationException" });
    const messages = (bad.body["Elements"] as Array<{ ValidationErrors: Array<{ Message: string }> }>)[0]?.ValidationErrors.map(
      (e) => e.Message,
    );
    expect(messages).toEqual(
      expect.arrayContaining(["Invoice Type must be specified", "A Contact must be specified for this type of transaction"]),
    );
    expect(xero.invoices(tenantId)).toHaveLength(before.length);

    const notJson = await api(xero, "Invoices", { token, tenantId }, { method: "POST", body: "{not json" });
    expect(notJson.status).toBe(400);
    expect(notJson.body).toMatchObject({ Type: "PostDataInvalidException" });
    expect((await api(xero, "Nothing", { token, tenantId })).status).toBe(404);
    expect((await api(xero, "Organisation", { token, tenantId }, { method: "DELETE" })).status).toBe(405);
  });
});

describe("fake Xero accounting API: who may call", () => {
  it("answers 401 with WWW-Authenticate without a valid token, TokenExpired once it expired, and counts neither", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, accessTokenLifetimeSeconds: 60 });
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;

    for (const auth of [{ tenantId }, { token: "not-a-token", tenantId }]) {
      const res = await api(xero, "Organisation", auth);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
      expect(res.body).toMatchObject({ Status: 401, Detail: "AuthenticationUnsuccessful" });
    }
    clock.advance(60_000);
    const expired = await api(xero, "Organisation", { token, tenantId });
    expect(expired.status).toBe(401);
    expect(String(expired.body["Detail"])).toMatch(/^TokenExpired: /);
    expect(limitHeaders(expired).min).toBeNull();
    expect(xero.apiUsage(tenantId).calls).toBe(0);
    expect(xero.appApiUsage().calls).toBe(0);
  });

  it("expireAccessTokens ends every token issued so far with TokenExpired; a token issued after it works", async () => {
    const xero = await start();
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;
    expect((await api(xero, "Organisation", { token, tenantId })).status).toBe(200);
    expect(xero.expireAccessTokens()).toBe(1);
    const expired = await api(xero, "Organisation", { token, tenantId });
    expect(expired.status).toBe(401);
    expect(String(expired.body["Detail"])).toMatch(/^TokenExpired: /);
    const fresh = await connected(xero, ["Org B"]);
    expect((await api(xero, "Organisation", { token: fresh.token, tenantId: fresh.tenantIds[0]! })).status).toBe(200);
    expect(xero.expireAccessTokens()).toBe(1);
  });

  it("answers 403 AuthenticationUnsuccessful for a tenant outside the token's grant, or none", async () => {
    const xero = await start();
    const mine = await connected(xero, ["Mine"]);
    const theirs = await connected(xero, ["Theirs"]);
    for (const tenantId of [theirs.tenantIds[0]!, "", undefined, "not-a-uuid"]) {
      const res = await api(xero, "Invoices", tenantId === undefined ? { token: mine.token } : { token: mine.token, tenantId });
      expect(res.status, String(tenantId)).toBe(403);
      expect(res.body).toMatchObject({ Title: "Forbidden", Status: 403, Detail: "AuthenticationUnsuccessful" });
    }
    // The tenant id may come in upper case, as some SDKs send it.
    expect((await api(xero, "Invoices", { token: mine.token, tenantId: mine.tenantIds[0]!.toUpperCase() })).status).toBe(200);
    expect(xero.apiUsage(theirs.tenantIds[0]!).calls).toBe(0);
    expect(xero.appApiUsage().calls).toBe(1);
  });
});

describe("fake Xero accounting API: Xero's limits", () => {
  it("refuses the call over the minute limit with 429 minute and a Retry-After until the oldest call leaves the window", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, apiLimits: { tenantCallsPerMinute: 3, minuteMs: 2000 } });
    const { token, tenantIds } = await connected(xero, ["Org A", "Org B"]);
    const [a, b] = tenantIds as [string, string];

    const remaining: Array<string | null | undefined> = [];
    for (let i = 0; i < 3; i++) {
      remaining.push(limitHeaders(await api(xero, "Organisation", { token, tenantId: a })).min);
      clock.advance(400);
    }
    expect(remaining).toEqual(["2", "1", "0"]);
    const over = await api(xero, "Organisation", { token, tenantId: a });
    expect(over.status).toBe(429);
    // The first call (at t=0) leaves the 2 s window at t=2000; it is t=1200 now: 0.8 s, rounded up.
    expect(limitHeaders(over)).toMatchObject({ problem: "minute", retryAfter: "1", min: "0", day: "4997" });
    // Another tenant has its own minute.
    expect((await api(xero, "Organisation", { token, tenantId: b })).status).toBe(200);

    clock.advance(800);
    const after = await api(xero, "Organisation", { token, tenantId: a });
    expect(after.status).toBe(200);
    expect(limitHeaders(after).min).toBe("0");
    expect(xero.apiUsage(a)).toMatchObject({ calls: 5, rateLimited: { minute: 1, day: 0, concurrent: 0, appminute: 0 } });
    expect(xero.appApiUsage()).toMatchObject({ calls: 6, rateLimited: { minute: 1 } });
  });

  it("refuses the call over the day limit with 429 day and a Retry-After of hours", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now, accessTokenLifetimeSeconds: 7200, apiLimits: { tenantCallsPerDay: 2 } });
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;
    expect(limitHeaders(await api(xero, "Contacts", { token, tenantId })).day).toBe("1");
    clock.advance(3_600_000);
    expect(limitHeaders(await api(xero, "Contacts", { token, tenantId })).day).toBe("0");
    const over = await api(xero, "Contacts", { token, tenantId });
    expect(over.status).toBe(429);
    expect(limitHeaders(over)).toMatchObject({ problem: "day", retryAfter: String(86_400 - 3600), day: "0" });
    expect(xero.apiUsage(tenantId).rateLimited.day).toBe(1);
  });

  it("admits 5 calls in flight per tenant and refuses the 6th with 429 concurrent; maxInFlight counts every arrival", async () => {
    const xero = await start({ apiLatencyMs: 300 });
    const { token, tenantIds } = await connected(xero, ["Org A", "Org B"]);
    const [a, b] = tenantIds as [string, string];

    const answers = await Promise.all([
      ...Array.from({ length: 12 }, () => api(xero, "Invoices", { token, tenantId: a })),
      ...Array.from({ length: 5 }, () => api(xero, "Invoices", { token, tenantId: b })),
    ]);
    const statusesA = answers.slice(0, 12).map((r) => r.status);
    expect(statusesA.filter((s) => s === 200)).toHaveLength(5);
    expect(statusesA.filter((s) => s === 429)).toHaveLength(7);
    const refused = answers.find((r) => r.status === 429)!;
    expect(limitHeaders(refused)).toMatchObject({ problem: "concurrent", retryAfter: "1" });
    expect(answers.slice(12).every((r) => r.status === 200)).toBe(true);
    expect(xero.apiUsage(a)).toMatchObject({ calls: 12, inFlight: 0, rateLimited: { concurrent: 7 } });
    expect(xero.apiUsage(a).maxInFlight).toBeGreaterThan(5);
    expect(xero.apiUsage(b)).toMatchObject({ calls: 5, maxInFlight: 5, rateLimited: { concurrent: 0 } });
  });

  it("callers that keep 5 calls in flight get no 429, and the fake saw exactly 5 at once", async () => {
    const xero = await start({ apiLatencyMs: 20 });
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;
    const lane = async (): Promise<number[]> => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await api(xero, "Contacts", { token, tenantId })).status);
      return statuses;
    };
    const statuses = (await Promise.all(Array.from({ length: 5 }, lane))).flat();
    expect(statuses).toEqual(Array(30).fill(200));
    expect(xero.apiUsage(tenantId)).toMatchObject({ calls: 30, maxInFlight: 5, rateLimited: { concurrent: 0, minute: 0 } });
  });

  it("counts /connections against the app's minute only, and refuses any call over it with 429 appminute", async () => {
    const xero = await start({ apiLimits: { appCallsPerMinute: 4 } });
    const { token, tenantIds } = await connected(xero, ["Org A", "Org B"]);
    const [a, b] = tenantIds as [string, string];

    const connections = await fetch(xero.connectionsUrl, { headers: { Authorization: `Bearer ${token}` } });
    expect(connections.status).toBe(200);
    expect(((await connections.json()) as unknown[]).length).toBe(2);
    expect(connections.headers.get("x-appminlimit-remaining")).toBe("3");
    expect(connections.headers.get("x-minlimit-remaining")).toBeNull();

    expect(limitHeaders(await api(xero, "Organisation", { token, tenantId: a }))).toMatchObject({ min: "59", app: "2" });
    expect(limitHeaders(await api(xero, "Organisation", { token, tenantId: b }))).toMatchObject({ min: "59", app: "1" });
    expect(limitHeaders(await api(xero, "Organisation", { token, tenantId: a }))).toMatchObject({ min: "58", app: "0" });
    const over = await api(xero, "Organisation", { token, tenantId: b });
    expect(over.status).toBe(429);
    expect(limitHeaders(over)).toMatchObject({ problem: "appminute", app: "0", min: "59" });
    expect(Number(limitHeaders(over).retryAfter)).toBeGreaterThanOrEqual(59);
    const connectionsOver = await fetch(xero.connectionsUrl, { headers: { Authorization: `Bearer ${token}` } });
    expect(connectionsOver.status).toBe(429);
    expect(connectionsOver.headers.get("x-rate-limit-problem")).toBe("appminute");

    expect(xero.apiUsage(a).calls).toBe(2);
    expect(xero.apiUsage(b)).toMatchObject({ calls: 2, rateLimited: { appminute: 1 } });
    expect(xero.appApiUsage()).toMatchObject({ calls: 6, rateLimited: { appminute: 2 } });
  });

  it("can use the fake's real clock with a 1-second minute", async () => {
    const xero = await start({ apiLimits: { tenantCallsPerMinute: 2, minuteMs: 1000 } });
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;
    await api(xero, "Organisation", { token, tenantId });
    await api(xero, "Organisation", { token, tenantId });
    const over = await api(xero, "Organisation", { token, tenantId });
    expect(limitHeaders(over)).toMatchObject({ problem: "minute", retryAfter: "1" });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await api(xero, "Organisation", { token, tenantId })).status).toBe(200);
  });
});

describe("fake Xero accounting API: what tests inject and reset", () => {
  it("injectRateLimit holds one tenant with 429s until its Retry-After has passed", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now });
    const { token, tenantIds } = await connected(xero, ["Org A", "Org B"]);
    const [a, b] = tenantIds as [string, string];

    xero.injectRateLimit({ tenantId: a, retryAfterS: 2, problem: "minute" });
    const first = await api(xero, "Invoices", { token, tenantId: a });
    expect(first.status).toBe(429);
    expect(limitHeaders(first)).toMatchObject({ problem: "minute", retryAfter: "2", min: "60" });
    expect((await api(xero, "Invoices", { token, tenantId: b })).status).toBe(200);
    clock.advance(1500);
    expect(limitHeaders(await api(xero, "Invoices", { token, tenantId: a }))).toMatchObject({ problem: "minute", retryAfter: "1" });
    clock.advance(500);
    expect((await api(xero, "Invoices", { token, tenantId: a })).status).toBe(200);
    expect(xero.apiUsage(a)).toMatchObject({ calls: 3, rateLimited: { minute: 2 } });
  });

  it("injectRateLimit without a tenant holds the whole app, /connections included", async () => {
    const clock = manualClock();
    const xero = await start({ now: clock.now });
    const { token, tenantIds } = await connected(xero, ["Org A", "Org B"]);
    xero.injectRateLimit({ retryAfterS: 30, problem: "appminute" });
    for (const tenantId of tenantIds) {
      expect(limitHeaders(await api(xero, "Contacts", { token, tenantId }))).toMatchObject({ problem: "appminute", retryAfter: "30" });
    }
    const connections = await fetch(xero.connectionsUrl, { headers: { Authorization: `Bearer ${token}` } });
    expect(connections.status).toBe(429);
    expect(xero.appApiUsage().rateLimited.appminute).toBe(3);
    clock.advance(30_000);
    expect((await api(xero, "Contacts", { token, tenantId: tenantIds[0]! })).status).toBe(200);
  });

  it("resetApiUsage forgets counts, windows and holds, but keeps the limits and the data", async () => {
    const xero = await start({ apiLimits: { tenantCallsPerMinute: 1 } });
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;
    await api(xero, "Invoices", { token, tenantId }, { method: "POST", body: { Type: "ACCPAY", Contact: { Name: "Supplier" } } });
    expect((await api(xero, "Invoices", { token, tenantId })).status).toBe(429);
    xero.injectRateLimit({ tenantId, retryAfterS: 600, problem: "day" });

    xero.resetApiUsage();
    expect(xero.apiUsage(tenantId)).toEqual({
      calls: 0,
      inFlight: 0,
      maxInFlight: 0,
      rateLimited: { minute: 0, day: 0, concurrent: 0, appminute: 0 },
    });
    expect(xero.appApiUsage().calls).toBe(0);
    const again = await api(xero, "Invoices", { token, tenantId });
    expect(again.status).toBe(200);
    expect((again.body["Invoices"] as unknown[]).length).toBe(2);
    expect(xero.apiLimits.tenantCallsPerMinute).toBe(1);
  });

  it("changes limits and delay while running, and refuses nonsense", async () => {
    const xero = await start();
    expect(xero.apiLimits).toEqual({
      tenantCallsInFlight: 5,
      tenantCallsPerMinute: 60,
      tenantCallsPerDay: 5000,
      appCallsPerMinute: 10_000,
      minuteMs: 60_000,
      dayMs: 86_400_000,
    });
    const { token, tenantIds } = await connected(xero, ["Org A"]);
    const tenantId = tenantIds[0]!;
    xero.setApiLimits({ tenantCallsPerMinute: 1 });
    xero.setApiLatency(50);
    const started = Date.now();
    expect((await api(xero, "Organisation", { token, tenantId })).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect((await api(xero, "Organisation", { token, tenantId })).status).toBe(429);

    expect(() => xero.setApiLimits({ tenantCallsInFlight: 0 })).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    expect(() => xero.setApiLatency(-1)).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    expect(() => xero.injectRateLimit({ tenantId, retryAfterS: 0, problem: "minute" })).toThrow(
      expect.objectContaining({ code: "invalid_argument" }),
    );
    expect(() => xero.injectRateLimit({ retryAfterS: 1, problem: "hour" as "minute" })).toThrow(
      expect.objectContaining({ code: "invalid_argument" }),
    );
    await expect(startFakeXero({ apiLimits: { minuteMs: 1.5 } })).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(startFakeXero({ apiLatencyMs: Number.NaN })).rejects.toMatchObject({ code: "invalid_argument" });
  });
});
