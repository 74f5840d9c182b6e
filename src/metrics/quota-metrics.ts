import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { QuotaLimit } from "../quota/call-budget.js";
import type { QuotaKeeper } from "../quota/quota-keeper.js";

const limits: QuotaLimit[] = ["concurrent", "minute", "day", "app_minute"];

/**
 * Registers the quota keeper's metrics: calls left per organisation (minute
 * and day) and for the app, calls waiting now and how long they waited, the
 * 429s the broker answered itself (calls that never reached Xero) and the
 * 429s Xero sent, by limit. Organisations are labelled by tenant id: as
 * many as the connections reach. Returns the function that stops listening.
 */
export function createQuotaMetrics(registry: Registry, keeper: QuotaKeeper): () => void {
  new Gauge({
    name: "tokenbroker_quota_remaining_calls",
    help: "Calls an organisation may still make in the minute or day window, as every broker sharing the store counted them (with what Xero's remaining headers said).",
    labelNames: ["tenant_id", "window"] as const,
    registers: [registry],
    async collect() {
      const usage = await keeper.usage();
      this.reset();
      for (const t of usage.tenants) {
        this.set({ tenant_id: t.tenantId, window: "minute" }, Math.max(0, keeper.limits.perMinute - t.minute));
        this.set({ tenant_id: t.tenantId, window: "day" }, Math.max(0, keeper.limits.perDay - t.day));
      }
    },
  });
  new Gauge({
    name: "tokenbroker_quota_app_remaining_calls",
    help: "Calls the app may still make in the minute window, every organisation together.",
    registers: [registry],
    async collect() {
      this.set(Math.max(0, keeper.limits.appPerMinute - (await keeper.usage()).appMinute));
    },
  });
  new Gauge({
    name: "tokenbroker_quota_queued_calls",
    help: "Calls waiting now for their organisation's budget, in this process.",
    registers: [registry],
    collect() {
      this.set(keeper.queued());
    },
  });
  const waits = new Histogram({
    name: "tokenbroker_quota_wait_seconds",
    help: "How long calls waited for their budget, by outcome: granted (sent to Xero), refused (the broker's 429), abandoned (the caller left).",
    labelNames: ["outcome"] as const,
    buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const refused = new Counter({
    name: "tokenbroker_quota_refused_total",
    help: "Calls the broker answered 429 itself, without calling Xero (429s avoided), by limit and by whose count: broker or xero (a hold from Xero's 429).",
    labelNames: ["limit", "held_by"] as const,
    registers: [registry],
  });
  const received = new Counter({
    name: "tokenbroker_quota_xero_429_total",
    help: "429 answers from Xero, by the limit its X-Rate-Limit-Problem named.",
    labelNames: ["limit"] as const,
    registers: [registry],
  });
  for (const limit of limits) {
    received.inc({ limit }, 0);
    for (const held_by of ["broker", "xero"]) refused.inc({ limit, held_by }, 0);
  }
  return keeper.subscribe((event) => {
    switch (event.type) {
      case "granted":
        waits.observe({ outcome: "granted" }, event.waitedMs / 1000);
        break;
      case "abandoned":
        waits.observe({ outcome: "abandoned" }, event.waitedMs / 1000);
        break;
      case "refused":
        waits.observe({ outcome: "refused" }, event.waitedMs / 1000);
        refused.inc({ limit: event.limit, held_by: event.heldByXero ? "xero" : "broker" });
        break;
      case "xero_429":
        received.inc({ limit: event.limit });
        break;
    }
  });
}
