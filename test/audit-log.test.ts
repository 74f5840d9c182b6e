/**
 * The audit log: every token handed out, every refused request of a known key
 * and every refresh, with key name, tenant or connection and time, never a
 * token; written in batches off the request path.
 */
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createAuditLog, type AuditEntry } from "../src/audit/audit-log.js";
import { readStream } from "./helpers/stream-reader.js";
import { startSecureBroker, withKey, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { openStore } from "../src/store/open-store.js";
import { useStoreBackends } from "./helpers/store-backends.js";

const backends = useStoreBackends();

describe("audit log batching", () => {
  it("entries are written in one batch per interval, and close writes what is left", async () => {
    const batches: AuditEntry[][] = [];
    const log = createAuditLog({ sink: { write: (entries) => void batches.push([...entries]) }, flushMs: 50 });
    for (let i = 0; i < 1000; i++) log.record({ actor: "k", action: "get_token", outcome: "ok" });
    expect(batches).toHaveLength(0); // nothing written on the request path
    await delay(120);
    expect(batches.map((b) => b.length)).toEqual([1000]);
    log.record({ actor: "k", action: "get_token", outcome: "ok" });
    await log.close();
    expect(batches.map((b) => b.length)).toEqual([1000, 1]);
  });

  it("a full queue drops entries (counted) instead of growing without end; a failing sink does not throw at callers", async () => {
    const errors: unknown[] = [];
    const log = createAuditLog({
      sink: {
        write: () => {
          throw new Error("disk full");
        },
      },
      maxQueued: 10,
      onError: (e) => errors.push(e),
    });
    for (let i = 0; i < 15; i++) log.record({ actor: "k", action: "get_token", outcome: "ok" });
    await log.flush();
    expect(log.dropped).toBe(15); // 5 over the limit, 10 lost with the failed write
    expect(errors).toHaveLength(1);
  });
});

describe.each(backends)("audit log on $name", (backend) => {
  it.skipIf(backend.skip)(
    "a caller's repeated calls, held as one entry and its times, are written one row each, in order, with their times",
    async () => {
      const store = await openStore(await backend.location());
      try {
        const log = createAuditLog({ sink: store.auditLog, flushMs: 60_000 });
        const t0 = Date.UTC(2026, 11, 5, 9);
        const get = (actor: string, at: number, tenantId = "tenant-a") =>
          log.record({ actor, action: "get_token", tenantId, connectionId: "conn-1", outcome: "ok", at });
        // Runs of 3, 1, 1 and 2 equal entries; equal times within a run, and a run that differs only by its tenant.
        for (const at of [t0, t0, t0 + 1]) get("billing", at);
        get("payroll", t0 + 2);
        get("billing", t0 + 3, "tenant-b");
        for (const at of [t0 + 4, t0 + 5]) get("billing", at);
        log.record({ actor: "broker", action: "refresh", connectionId: "conn-1", outcome: "ok", detail: "expiry", at: t0 + 6 });
        await log.flush();
        const rows = await store.auditLog.read({ since: t0 });
        expect(rows.map((e) => [e.at - t0, e.actor, e.action, e.tenantId ?? null, e.connectionId, e.outcome, e.detail ?? null])).toEqual([
          [0, "billing", "get_token", "tenant-a", "conn-1", "ok", null],
          [0, "billing", "get_token", "tenant-a", "conn-1", "ok", null],
          [1, "billing", "get_token", "tenant-a", "conn-1", "ok", null],
          [2, "payroll", "get_token", "tenant-a", "conn-1", "ok", null],
          [3, "billing", "get_token", "tenant-b", "conn-1", "ok", null],
          [4, "billing", "get_token", "tenant-a", "conn-1", "ok", null],
          [5, "billing", "get_token", "tenant-a", "conn-1", "ok", null],
          [6, "broker", "refresh", null, "conn-1", "ok", "expiry"],
        ]);
        await log.close();
      } finally {
        await store.close();
      }
    },
  );
});

describe("audit log of a serving broker", () => {
  let f: SecureBrokerFixture;
  beforeEach(async () => {
    f = await startSecureBroker();
  });
  afterEach(async () => {
    await f?.close();
  });

  it("records tokens handed out (unary and streamed), refused requests and refreshes, never a token", async () => {
    const [tenantA, tenantB] = f.imported.tenants.map((t) => t.tenantId) as [string, string];
    const key = f.createKey("billing-channel", [tenantA]);
    const client = f.client();
    const started = Date.now();
    const { token } = await client.getToken({ selector: { case: "tenantId", value: tenantA } }, withKey(key));
    await client.getToken({ selector: { case: "tenantId", value: tenantB } }, withKey(key)).catch(() => {});
    await client.getToken({ selector: { case: "tenantId", value: tenantA } }).catch(() => {}); // no key: not recorded
    const watch = readStream((signal) =>
      client.watchToken({ selector: { case: "tenantId", value: tenantA } }, { ...withKey(key), signal }),
    );
    await watch.next();
    const { token: fresh } = await client.reportExpired(
      { selector: { case: "tenantId", value: tenantA }, accessToken: token!.accessToken },
      withKey(key),
    );
    await watch.next(); // the refreshed token, streamed
    watch.cancel();

    const entries = (await f.auditEntries()).filter((e) => e.at >= started);
    const summary = entries.map((e) => [e.actor, e.action, e.tenantId ?? null, e.connectionId ?? null, e.outcome]);
    expect(summary).toEqual(
      expect.arrayContaining([
        ["billing-channel", "get_token", tenantA, f.connectionId, "ok"],
        ["billing-channel", "get_token", tenantB, null, "permission_denied"],
        ["billing-channel", "watch_token", tenantA, f.connectionId, "ok"],
        ["broker", "refresh", null, f.connectionId, "ok"],
        ["billing-channel", "report_expired", tenantA, f.connectionId, "ok"],
      ]),
    );
    expect(entries.filter((e) => e.action === "watch_token")).toHaveLength(2); // one per token streamed
    expect(entries.filter((e) => e.actor === undefined)).toEqual([]); // the call without a key left no entry
    expect(entries.find((e) => e.action === "refresh")?.detail).toBe("report");
    for (const e of entries) expect(e.at).toBeGreaterThanOrEqual(started);

    const table = JSON.stringify(withRawDatabase(f.dbPath, (db) => db.prepare("SELECT * FROM audit_log").all()));
    for (const secret of [token!.accessToken, fresh!.accessToken, key]) expect(table).not.toContain(secret);
  });
});
