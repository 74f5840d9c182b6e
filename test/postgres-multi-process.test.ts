/**
 * Several `tokenbroker serve` processes on one PostgreSQL database, as on several hosts: one upstream refresh
 * per expiry however many callers ask at once on however many brokers, a refresh pushed to the other brokers'
 * watchers as it commits, and a holder that stalled past its lease fenced out (its commit refused, the token
 * set committed by the broker that took over kept). Counted at the fake Xero.
 */
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { TokenService, type WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startFakeXero, type FakeGrant, type FakeXero, type FakeXeroOptions } from "@tokenbroker/fake-xero";
import { protocols } from "./helpers/broker-fixture.js";
import { missingPostgres, type PostgresServer } from "./helpers/postgres-server.js";
import { cliImport, fakeEnv, killAllServe, runCli, startServe, type ServeProcess } from "./helpers/serve-process.js";
import { usePostgres } from "./helpers/store-backends.js";

const skip = missingPostgres();
const postgres = usePostgres();

interface Stored {
  version: number;
  accessToken: string;
  refreshToken: string;
  expiresAt: number;
}

let fake: FakeXero | undefined;
let reader: pg.Client | undefined;
const aborts: AbortController[] = [];

afterEach(async () => {
  for (const a of aborts.splice(0)) a.abort();
  await killAllServe();
  await reader?.end();
  reader = undefined;
  await fake?.close();
  fake = undefined;
});

const transports: Array<(baseUrl: string) => Transport> = ["gRPC (", "gRPC-Web", "Connect JSON"].map(
  (name) => protocols.find((p) => p.name.startsWith(name))!.transport,
);

const refreshEvents = (brokers: ServeProcess[]) => brokers.flatMap((b) => b.logs()).filter((l) => l["event"] === "refresh");

describe.skipIf(skip)("broker processes on one PostgreSQL database", () => {
  let server: PostgresServer;
  beforeAll(async () => {
    server = await postgres();
  });

  /** A fake Xero, one imported grant, and `count` serve processes on a fresh database. */
  async function startCluster(
    options: { count?: number; fake?: FakeXeroOptions; env?: Record<string, string>; faultHooks?: boolean[] } = {},
  ) {
    fake = await startFakeXero(options.fake);
    const f = fake;
    const db = await server.createDatabase();
    const env = fakeEnv(f, options.env);
    const grant: FakeGrant = f.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    const connectionId = await cliImport(env, db, grant.refreshToken);
    const brokers = await Promise.all(
      Array.from({ length: options.count ?? 3 }, (_, i) =>
        startServe({ env, db, ...(options.faultHooks?.[i] ? { faultHooks: true } : {}) }),
      ),
    );
    reader = new pg.Client({ connectionString: db });
    await reader.connect();
    const stored = async (): Promise<Stored> => {
      const { rows } = await reader!.query(
        `SELECT version, access_token AS "accessToken", refresh_token AS "refreshToken", expires_at AS "expiresAt"
         FROM token_sets WHERE connection_id = $1`,
        [connectionId],
      );
      const row = rows[0] as Record<string, string>;
      return {
        version: Number(row["version"]),
        accessToken: row["accessToken"]!,
        refreshToken: row["refreshToken"]!,
        expiresAt: Number(row["expiresAt"]),
      };
    };
    return {
      fake: f,
      db,
      env,
      grant,
      connectionId,
      brokers,
      clients: brokers.map((b, i): Client<typeof TokenService> => createClient(TokenService, transports[i % 3]!(b.url))),
      stored,
      async reimport() {
        const out = await runCli(["import", "--db", db, "--insecure-no-encryption"], env, `${f.getGrant(grant.grantId)!.refreshToken}\n`);
        if (out.code !== 0) throw new Error(`import failed (${out.code}): ${out.stderr}`);
      },
    };
  }

  it("300 concurrent callers spread over three brokers at expiry make exactly 1 upstream refresh", async () => {
    // Imported again with a 3 s token once the three listen, so that it expires in real time before anyone asks.
    const c = await startCluster();
    c.fake.setAccessTokenLifetime(3);
    await c.reimport();
    const before = await c.stored();
    const callsAfterImport = c.fake.tokenEndpointCalls;
    await delay(Math.max(0, before.expiresAt - Date.now()) + 50);

    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        c.clients[i % 3]!.getToken(
          { selector: i % 2 ? { case: "tenantId", value: c.grant.tenants[0]!.tenantId } : { case: "connectionId", value: c.connectionId } },
          { timeoutMs: 15_000 },
        ),
      ),
    );
    const stormMs = performance.now() - started;

    expect(c.fake.tokenEndpointCalls - callsAfterImport).toBe(1);
    const after = await c.stored();
    expect(after.version).toBe(before.version + 1);
    expect(new Set(results.map((r) => r.token?.accessToken))).toEqual(new Set([after.accessToken]));
    const events = refreshEvents(c.brokers);
    expect(events.filter((e) => e["outcome"] === "ok")).toHaveLength(1);
    expect(events.filter((e) => e["outcome"] !== "ok" && e["outcome"] !== "already_fresh")).toEqual([]);
    expect(c.fake.invalidGrants).toBe(0);
    console.info(`300 callers over 3 brokers on PostgreSQL at expiry: 1 upstream refresh, all answered in ${Math.round(stormMs)} ms`);
  });

  it("a refresh made by broker A reaches a WatchToken subscriber on broker B as it commits", async () => {
    const c = await startCluster({ count: 2 });
    const abort = new AbortController();
    aborts.push(abort);
    const stream = c.clients[1]!.watchToken({ selector: { case: "connectionId", value: c.connectionId } }, { signal: abort.signal })[
      Symbol.asyncIterator
    ]();
    const next = async (): Promise<WatchTokenResponse> => {
      const r = await stream.next();
      if (r.done) throw new Error("the watch stream ended");
      return r.value;
    };
    expect((await next()).token?.accessToken).toBe((await c.stored()).accessToken);

    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const current = await c.stored();
      const report = await c.clients[0]!.reportExpired({
        selector: { case: "connectionId", value: c.connectionId },
        accessToken: current.accessToken,
      });
      const committed = performance.now(); // A answers after its commit
      expect(report.refreshed).toBe(true);
      const pushed = await Promise.race([next(), delay(3000).then(() => undefined)]);
      expect(pushed, "B's watcher was not told of A's refresh").toBeDefined();
      delays.push(performance.now() - committed);
      expect(pushed!.token?.accessToken).toBe(report.token?.accessToken);
      expect(pushed!.token?.version).toBe(BigInt(current.version + 1));
    }
    for (const ms of delays) expect(ms).toBeLessThan(1000);
    console.info(`refresh on A seen by B's watcher after ${delays.map((d) => Math.round(d)).join(", ")} ms`);
  });

  it("a holder that stalls past its lease is fenced out: the broker that took over commits, the stalled commit is refused", async () => {
    const leaseTtlSeconds = 4;
    const c = await startCluster({
      count: 2,
      faultHooks: [true, false],
      fake: { graceRetry: "same", graceSeconds: 60 },
      env: {
        TOKENBROKER_UPSTREAM_TIMEOUT_MS: "3000",
        TOKENBROKER_LEASE_TTL_SECONDS: String(leaseTtlSeconds),
        // Only the fault-hooks entry (broker A) reads it: A stalls after Xero answered, before its commit.
        TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS: String((leaseTtlSeconds + 2) * 1000),
      },
    });
    const [a, b] = c.brokers as [ServeProcess, ServeProcess];
    const before = await c.stored();
    const callsBefore = c.fake.tokenEndpointCalls;
    const selector = { case: "connectionId" as const, value: c.connectionId };

    const onA = c.clients[0]!.reportExpired({ selector, accessToken: before.accessToken }, { timeoutMs: 20_000 }).catch((e: unknown) => e);
    await a.waitForLog((l) => l["event"] === "test_pause" && l["point"] === "before_commit", 10_000);
    // B is asked meanwhile: it waits for A's lease to lapse, takes it over and refreshes (within Xero's grace period).
    const onB = await c.clients[1]!.reportExpired({ selector, accessToken: before.accessToken }, { timeoutMs: 20_000 });
    expect(onB.refreshed).toBe(true);
    const takenOver = await c.stored();
    expect(takenOver.version).toBe(before.version + 1);
    expect(takenOver.accessToken).toBe(onB.token?.accessToken);

    await onA;
    await a.waitForLog((l) => l["event"] === "refresh" && l["outcome"] === "transient_error", 10_000);
    const lost = refreshEvents([a]).find((e) => e["outcome"] === "transient_error");
    expect(lost?.["error"]).toMatch(/lease lost/);
    // A's answer was thrown away: the stored token set is still B's, and A now serves it too.
    const after = await c.stored();
    expect(after).toEqual(takenOver);
    expect(after.refreshToken).toBe(c.fake.getGrant(c.grant.grantId)?.refreshToken);
    const served = await c.clients[0]!.getToken({ selector });
    expect(served.token?.accessToken).toBe(after.accessToken);
    expect(c.fake.tokenEndpointCalls - callsBefore).toBe(2);
    expect(c.fake.graceViolations).toBe(0);
    expect(c.fake.invalidGrants).toBe(0);
    expect(refreshEvents([b]).filter((e) => e["outcome"] === "ok")).toHaveLength(1);
  });

  it("PostgreSQL stopped between Xero's answer and the commit: nothing is lost; once it is back, the next refresh finishes with the spent refresh token inside Xero's grace period", async () => {
    const leaseTtlSeconds = 4;
    const c = await startCluster({
      count: 1,
      faultHooks: [true],
      fake: { graceRetry: "new", graceSeconds: 60 },
      env: {
        TOKENBROKER_UPSTREAM_TIMEOUT_MS: "3000",
        TOKENBROKER_LEASE_TTL_SECONDS: String(leaseTtlSeconds),
        TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS: "1500",
      },
    });
    const [broker] = c.brokers as [ServeProcess];
    const before = await c.stored();
    await reader!.end(); // the test's own connection goes with the server
    reader = undefined;
    const callsBefore = c.fake.tokenEndpointCalls;
    const selector = { case: "connectionId" as const, value: c.connectionId };

    const first = c.clients[0]!.reportExpired({ selector, accessToken: before.accessToken }, { timeoutMs: 20_000 }).then(
      () => "ok",
      (e: unknown) => (e instanceof ConnectError ? Code[e.code] : String(e)),
    );
    await broker.waitForLog((l) => l["event"] === "test_pause" && l["point"] === "before_commit", 10_000);
    server.stop(); // Xero has spent the stored refresh token; the commit will find no database
    expect(await first).toBe("Unavailable");
    server.start();

    // Once the lease lapses, the next caller refreshes with the stored (spent) refresh token: Xero's grace period takes it.
    await delay(leaseTtlSeconds * 1000);
    const again = await c.clients[0]!.reportExpired({ selector, accessToken: before.accessToken }, { timeoutMs: 20_000 });
    expect(again.refreshed).toBe(true);
    reader = new pg.Client({ connectionString: c.db });
    await reader.connect();
    const after = await c.stored();
    expect(after.version).toBe(before.version + 1);
    expect(after.accessToken).toBe(again.token?.accessToken);
    expect(after.refreshToken).toBe(c.fake.getGrant(c.grant.grantId)?.refreshToken);
    expect(c.fake.tokenEndpointCalls - callsBefore).toBe(2);
    expect(c.fake.graceViolations).toBe(0);
    expect(c.fake.invalidGrants).toBe(0);
    const served = await c.clients[0]!.getToken({ selector });
    expect(served.token?.accessToken).toBe(after.accessToken);
  });
});
