import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import Database from "better-sqlite3";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { ManualClock } from "../src/clock.js";
import { startFakeXero } from "@tokenbroker/fake-xero";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import { LeaseLostError } from "../src/store/token-set-store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { cliImport, fakeEnv, startServe, until, type ServeProcess } from "./helpers/serve-process.js";
import { taggedTokenSet } from "./helpers/token-sets.js";

/** Where a refresh is killed, in the order each round visits them. */
const POINTS = [
  "after the commit",
  "before the request leaves",
  "while Xero is answering",
  "after Xero answered, before the commit",
] as const;
type Point = (typeof POINTS)[number];

/**
 * Rounds over the four points per grace mode: 4 × 2 = 8 kills, 16 for both modes. Two rounds visit every point
 * with callers driving the refresh, and "after the commit" also with the scheduler's recovery alone finishing the
 * lease the previous round's last kill left; more rounds repeat the same sequence (it was 7 rounds, 28 kills).
 */
const ROUNDS = 2;
/** Short lease, so a dead holder's refresh is taken over quickly; the upstream timeout must stay below it. */
const LEASE_TTL_SECONDS = 0.5;
const UPSTREAM_TIMEOUT_MS = 400;
/** How long the fake holds each token response, and the test-only pauses inside each refresh. */
// Long enough that a kill sent on seeing a point lands inside it even on a loaded machine.
const LATENCY_MS = 150;
const PAUSE_MS = 150;

interface TokenRow {
  version: number;
  accessToken: string;
  refreshToken: string;
}

// The two grace modes run at the same time, each with its own fake Xero, database and broker processes.
describe.concurrent("SIGKILL at every point of a refresh", () => {
  it.for([{ graceRetry: "same" as const }, { graceRetry: "new" as const }])(
    `grace retry returns the $graceRetry pair: after ${POINTS.length * ROUNDS} kills every connection is active and serving, and no refresh token was used outside its grace period`,
    { timeout: 120_000 }, // about 8 s on a quiet machine; room for a loaded one
    async ({ graceRetry }, { expect, onTestFinished }) => {
      // A short grace period (10 s instead of 30 min): a refresh token reused late would show up as a violation.
      const fake = await startFakeXero({ graceRetry, graceSeconds: 10 });
      const dir = tempDir();
      const brokers: ServeProcess[] = [];
      let readOnly: Database.Database | undefined;
      onTestFinished(async () => {
        await Promise.all(brokers.map((b) => b.kill("SIGKILL")));
        readOnly?.close();
        await fake.close();
        dir.cleanup();
      });
      const db = join(dir.path, "tokenbroker.db");
      const env = fakeEnv(fake, {
        TOKENBROKER_UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
        // Test-only pauses (read by the test entry of startServe's faultHooks, not by tokenbroker serve): the kill lands inside them.
        TOKENBROKER_TEST_PAUSE_AFTER_LEASE_MS: String(PAUSE_MS),
        TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS: String(PAUSE_MS),
      });
      const serveArgs = ["--lease-ttl", String(LEASE_TTL_SECONDS)];
      const grants = [fake.addGrant({ tenants: [{ tenantName: "Org A" }] }), fake.addGrant({ tenants: [{ tenantName: "Org B" }] })];
      const connections = [await cliImport(env, db, grants[0]!.refreshToken), await cliImport(env, db, grants[1]!.refreshToken)];
      const [subject] = connections as [string, string];
      fake.setLatency(LATENCY_MS);

      // A second, read-only connection to the database: what the broker committed, and its lease.
      readOnly = new Database(db, { readonly: true });
      const tokenOf = readOnly.prepare<[string], TokenRow>(
        "SELECT version, access_token AS accessToken, refresh_token AS refreshToken FROM token_sets WHERE connection_id = ?",
      );
      const leaseOf = readOnly.prepare<[string], { holder: string }>("SELECT holder FROM refresh_leases WHERE connection_id = ?");
      const token = (id: string) => tokenOf.get(id)!;
      const accessTokensSeen = new Set<string>();

      /**
       * Starts a broker, keeps asking it to refresh the subject, and SIGKILLs it at `point`. With `callers: false`
       * nobody asks: the refresh killed is the scheduler's recovery of the lease the previous kill left.
       */
      async function killAt(point: Point, callers: boolean): Promise<void> {
        const broker = await startServe({ env, db, args: serveArgs, faultHooks: true });
        brokers.push(broker);
        const before = token(subject);
        const refreshesBefore = fake.refreshes;
        const stop = new AbortController();
        const driving = callers ? drive(broker, stop.signal) : Promise.resolve();
        const pausedAt = (p: string) => (l: Record<string, unknown>) =>
          l["event"] === "test_pause" && l["point"] === p && l["connectionId"] === subject;

        switch (point) {
          case "before the request leaves": {
            await broker.waitForLog(pausedAt("after_lease"));
            const calls = fake.tokenEndpointCalls;
            await broker.kill("SIGKILL");
            await delay(20); // anything already on its way would arrive by now
            expect(fake.tokenEndpointCalls, "a request left before the kill").toBe(calls);
            break;
          }
          case "while Xero is answering": {
            await broker.waitForLog(pausedAt("after_lease"));
            const calls = fake.tokenEndpointCalls;
            const refreshes = fake.refreshes;
            await until(() => fake.tokenEndpointCalls > calls, 2000, "the request to reach the fake");
            const killed = broker.kill("SIGKILL"); // the signal is sent before this returns
            expect(fake.refreshes, "the fake answered before the kill").toBe(refreshes);
            await killed;
            // The fake still answers into the dead connection: the old refresh token is now spent.
            await until(() => fake.refreshes > refreshes, 2000, "the fake to answer");
            break;
          }
          case "after Xero answered, before the commit": {
            await broker.waitForLog(pausedAt("before_commit"));
            await broker.kill("SIGKILL");
            expect(fake.refreshes).toBeGreaterThan(refreshesBefore);
            break;
          }
          case "after the commit": {
            if (callers) {
              await until(() => token(subject).version > before.version, 5000, "a commit");
            } else {
              // No caller: the scheduler's recovery commits (and then logs it).
              await broker.waitForLog((l) => l["event"] === "refresh" && l["cause"] === "recovery" && l["outcome"] === "ok");
            }
            await broker.kill("SIGKILL");
            expect(token(subject).version).toBeGreaterThan(before.version);
            expect(leaseOf.get(subject), "the lease is released in the commit's transaction").toBeUndefined();
            break;
          }
        }
        stop.abort();
        await driving;
        if (point !== "after the commit") {
          // Killed before the commit: nothing new stored, and the lease left behind records the attempt.
          expect(token(subject).version).toBe(before.version);
          expect(leaseOf.get(subject)?.holder).toContain(`:${broker.pid}:`);
        }
      }

      /** ReportExpired of the subject's current token, again and again, until the process dies. */
      async function drive(broker: ServeProcess, signal: AbortSignal): Promise<void> {
        const client = createClient(TokenService, createConnectTransport({ baseUrl: broker.url, httpVersion: "1.1" }));
        while (!signal.aborted) {
          const { accessToken } = token(subject);
          accessTokensSeen.add(accessToken);
          try {
            await client.reportExpired({ selector: { case: "connectionId", value: subject }, accessToken }, { signal, timeoutMs: 5000 });
          } catch {
            await delay(10);
          }
        }
      }

      let kills = 0;
      for (let round = 0; round < ROUNDS; round++) {
        for (const point of POINTS) {
          // Every other round, the lease left by the previous round's last kill is recovered by the scheduler alone.
          await killAt(point, !(point === "after the commit" && round % 2 === 1));
          kills++;
        }
      }
      expect(kills).toBe(POINTS.length * ROUNDS);

      // The last kill left a lease behind. A broker restarted with no caller at all finishes that refresh:
      // its scheduler finds the lapsed lease within a tick (1 s) once the lease TTL has passed.
      const before = token(subject);
      const restarted = performance.now();
      const broker = await startServe({ env, db, args: serveArgs, faultHooks: true });
      brokers.push(broker);
      await until(() => token(subject).version > before.version && leaseOf.get(subject) === undefined, 5000, "recovery");
      const recoveryMs = performance.now() - restarted;
      // Lease TTL + at most a 1 s tick, plus start-up and the refresh itself (slack for a loaded machine).
      expect(recoveryMs).toBeLessThan(LEASE_TTL_SECONDS * 1000 + 1000 + 2500);
      // The log line is written after the commit, so it may reach us a moment after the database shows the result.
      const recoveryLog = await broker.waitForLog(
        (l) => l["event"] === "refresh" && l["cause"] === "recovery" && l["outcome"] === "ok" && l["connectionId"] === subject,
        5000,
      );
      expect(recoveryLog["connectionId"]).toBe(subject);

      // Every connection is active and serving, with the grant's one live refresh token.
      const client = createClient(TokenService, createConnectTransport({ baseUrl: broker.url, httpVersion: "1.1" }));
      const states = readOnly.prepare("SELECT id, state FROM connections").all() as Array<{ id: string; state: string }>;
      expect(states.map((s) => s.state)).toEqual(["active", "active"]);
      for (const [i, id] of connections.entries()) {
        const { token: served } = await client.getToken({ selector: { case: "connectionId", value: id } });
        expect(served?.accessToken).toBe(token(id).accessToken);
        expect(token(id).refreshToken).toBe(fake.getGrant(grants[i]!.grantId)?.refreshToken);
        accessTokensSeen.add(token(id).accessToken);
      }
      // And the stored refresh token really works: one more refresh through the broker.
      const last = token(subject);
      const report = await client.reportExpired({ selector: { case: "connectionId", value: subject }, accessToken: last.accessToken });
      expect(report.refreshed).toBe(true);
      expect(report.token?.version).toBe(BigInt(last.version + 1));
      expect(token(subject).refreshToken).toBe(fake.getGrant(grants[0]!.grantId)?.refreshToken);

      expect(fake.graceViolations).toBe(0);
      expect(fake.invalidGrants).toBe(0);
      const recoveries = brokers.flatMap((b) => b.logs()).filter((l) => l["event"] === "refresh" && l["cause"] === "recovery");
      // No token or refresh token in any broker's log.
      const logs = brokers.map((b) => b.stderr()).join("");
      const secrets = [...accessTokensSeen, ...grants.map((g) => fake.getGrant(g.grantId)!.refreshToken), last.refreshToken];
      expect(secrets.filter((s) => logs.includes(s))).toEqual([]);
      console.info(
        `graceRetry=${graceRetry}: ${kills} SIGKILLs, ${fake.refreshes} refreshes at the fake, ` +
          `${recoveries.length} scheduler recoveries, last recovery ${Math.round(recoveryMs)} ms after restart`,
      );
    },
  );
});

describe("commit only under the lease", () => {
  it("a holder that stalled past its lease and lost it to another process cannot commit; the new holder can", async () => {
    const dir = tempDir();
    const clock = new ManualClock();
    const path = join(dir.path, "t.db");
    const a = openSqliteStore({ path, clock });
    const b = openSqliteStore({ path, clock });
    try {
      const tokenSet = (tag: string) => taggedTokenSet(clock.now(), tag);
      const { connectionId } = await a.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet("1"), tenants: [] });
      expect((await a.tokens.tryAcquireLease(connectionId, "A", 30_000)).acquired).toBe(true);
      clock.advance(30_000); // A stalls; its lease lapses and B takes over
      expect((await b.tokens.tryAcquireLease(connectionId, "B", 30_000)).acquired).toBe(true);

      await expect(a.tokens.commitRefresh(connectionId, "A", 1, tokenSet("A"))).rejects.toBeInstanceOf(LeaseLostError);
      expect((await a.tokens.getToken(connectionId))?.version).toBe(1);
      const committed = await b.tokens.commitRefresh(connectionId, "B", 1, tokenSet("B"));
      expect(committed).toMatchObject({ version: 2, refreshToken: "refresh-B" });

      // A lease that lapsed but nobody took over is still its holder's to commit under.
      expect((await a.tokens.tryAcquireLease(connectionId, "A", 30_000)).acquired).toBe(true);
      clock.advance(60_000);
      expect((await a.tokens.commitRefresh(connectionId, "A", 2, tokenSet("A2"))).version).toBe(3);
    } finally {
      await a.close();
      await b.close();
      dir.cleanup();
    }
  });
});
