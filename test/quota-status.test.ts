/**
 * What an operator sees of the quota keeper on the real server: the status page's column per organisation
 * (an hour of calls as a sparkline, calls left in the minute and the day, Xero's hold) and the metrics
 * (calls left, queued, waits, the broker's 429s and Xero's).
 */
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { QuotaExceededError, type XeroResponseHead } from "../src/quota/call-budget.js";
import { createCallBudget, type QuotaKeeper } from "../src/quota/quota-keeper.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { startBroker, tempDir, type BrokerFixture } from "./helpers/broker-fixture.js";
import { scrapeMetrics } from "./helpers/prometheus-text.js";

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function xero(status: number, headers: Record<string, string> = {}): XeroResponseHead {
  return { status, header: (name) => headers[name] };
}

async function brokerWithKeeper(): Promise<{ broker: BrokerFixture; keeper: QuotaKeeper }> {
  const dir = tempDir();
  // The keeper's counts in a store of their own: what the page shows comes from the keeper, not the token store.
  const quotaStore: Store = openSqliteStore({ path: join(dir.path, "quota.db") });
  const keeper = createCallBudget({
    store: quotaStore.quota,
    limits: { inFlight: 5, perMinute: 60, perDay: 5000, appPerMinute: 10_000 },
    maxWaitMs: 1000,
  });
  cleanup.push(async () => {
    await keeper.idle();
    keeper.close();
    await quotaStore.close();
    dir.cleanup();
  });
  const broker = await startBroker({ server: { quota: keeper } });
  cleanup.push(() => broker.close());
  return { broker, keeper };
}

it("shows each organisation's last hour of calls as a sparkline with the calls left, and Xero's hold", async () => {
  const { broker, keeper } = await brokerWithKeeper();
  for (let i = 0; i < 3; i++) (await keeper.acquire(broker.tenantId)).release(xero(200));
  (await keeper.acquire(broker.tenantId)).release(xero(200, { "x-minlimit-remaining": "50", "x-daylimit-remaining": "4990" }));
  await keeper.idle();

  let page = await (await fetch(`${broker.server.url}/`)).text();
  const row = page.slice(page.indexOf(`data-tenant-id="${broker.tenantId}"`));
  const cell = row.slice(row.indexOf('<td class="quota">'), row.indexOf("</td>", row.indexOf('<td class="quota">')));
  expect(cell).toContain('<svg class="sparkline"');
  expect(cell).toContain('aria-label="4 calls in the last hour, a bar a minute"');
  expect(cell).toContain("<title>4</title>");
  expect(cell).toContain("4 calls in the last hour");
  expect(cell).toContain("50/60 left this minute, 4990/5000 today");
  expect(page).toContain("<th>Calls to Xero</th>");
  // The other organisation made no call: an empty line, every call left.
  expect(page).toContain("0 calls in the last hour");
  expect(page).toContain("60/60 left this minute, 5000/5000 today");

  (await keeper.acquire(broker.tenantId)).release(xero(429, { "retry-after": "120", "x-rate-limit-problem": "minute" }));
  await keeper.idle();
  page = await (await fetch(`${broker.server.url}/`)).text();
  expect(page).toMatch(/held by Xero's 429 for 1[12]\d s/);
});

it("counts calls left, queued calls and their waits, the broker's 429s and Xero's in the metrics", async () => {
  const { broker, keeper } = await brokerWithKeeper();
  const t = broker.tenantId;
  (await keeper.acquire(t)).release(xero(200, { "x-minlimit-remaining": "58", "x-appminlimit-remaining": "9000" }));
  (await keeper.acquire(t)).release(xero(429, { "retry-after": "30", "x-rate-limit-problem": "minute" }));
  await keeper.idle();
  await expect(keeper.acquire(t)).rejects.toBeInstanceOf(QuotaExceededError);
  const held = await Promise.all(Array.from({ length: 5 }, () => keeper.acquire(undefined)));
  const metrics = await scrapeMetrics(broker.server.url);
  for (const p of held) p.release();
  expect(metrics.value("tokenbroker_quota_remaining_calls", { tenant_id: t, window: "minute" })).toBe(57); // Xero said 58 after the first; the second counts too
  expect(metrics.value("tokenbroker_quota_remaining_calls", { tenant_id: t, window: "day" })).toBe(4998);
  expect(metrics.value("tokenbroker_quota_app_remaining_calls")).toBe(10_000 - 1000 - 1 - 5);
  expect(metrics.value("tokenbroker_quota_queued_calls")).toBe(0);
  expect(metrics.value("tokenbroker_quota_wait_seconds_count", { outcome: "granted" })).toBe(7);
  expect(metrics.value("tokenbroker_quota_wait_seconds_count", { outcome: "refused" })).toBe(1);
  expect(metrics.value("tokenbroker_quota_refused_total", { limit: "minute", held_by: "xero" })).toBe(1);
  expect(metrics.value("tokenbroker_quota_refused_total", { held_by: "broker" })).toBe(0);
  expect(metrics.value("tokenbroker_quota_xero_429_total", { limit: "minute" })).toBe(1);
  expect(metrics.value("tokenbroker_quota_xero_429_total", { limit: "day" })).toBe(0);
});
