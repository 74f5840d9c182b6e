import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import Database from "better-sqlite3";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { TokenService, type WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startFakeXero, type FakeGrant, type FakeXero, type FakeXeroOptions } from "@tokenbroker/fake-xero";
import { protocols, tempDir } from "./helpers/broker-fixture.js";
import {
  cliImport,
  fakeEnv,
  INSECURE_SERVE_ARGS,
  killAllServe,
  runCli,
  startServe,
  until,
  type ServeProcess,
} from "./helpers/serve-process.js";

interface Cluster {
  fake: FakeXero;
  grant: FakeGrant;
  connectionId: string;
  brokers: ServeProcess[];
  /** A client of each broker, over a different protocol each (gRPC, gRPC-Web, Connect JSON). */
  clients: Array<Client<typeof TokenService>>;
  /** The stored token set, read through a second, read-only database connection. */
  stored(): { version: number; accessToken: string; refreshToken: string; expiresAt: number };
  /** Imports the current refresh token of the grant again (`tokenbroker import` while the brokers run): a new version. */
  reimport(): Promise<void>;
  lease(): { holder: string; ttlMs: number } | undefined;
}

let fake: FakeXero | undefined;
let dir: ReturnType<typeof tempDir> | undefined;
let readOnly: Database.Database | undefined;
const aborts: AbortController[] = [];

afterEach(async () => {
  for (const a of aborts.splice(0)) a.abort();
  await killAllServe();
  readOnly?.close();
  readOnly = undefined;
  await fake?.close();
  fake = undefined;
  dir?.cleanup();
  dir = undefined;
});

const transports: Array<(baseUrl: string) => Transport> = ["gRPC (", "gRPC-Web", "Connect JSON"].map(
  (name) => protocols.find((p) => p.name.startsWith(name))!.transport,
);

/** A fake Xero, one imported grant, and three `tokenbroker serve` processes on one SQLite file. */
async function startCluster(options: { fake?: FakeXeroOptions; env?: Record<string, string>; args?: string[] } = {}): Promise<Cluster> {
  const f = await startFakeXero(options.fake);
  fake = f;
  dir = tempDir();
  const db = join(dir.path, "tokenbroker.db");
  const env = fakeEnv(f, options.env);
  const grant = f.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
  const connectionId = await cliImport(env, db, grant.refreshToken);
  const brokers = await Promise.all([0, 1, 2].map(() => startServe({ env, db, ...(options.args ? { args: options.args } : {}) })));
  const ro = new Database(db, { readonly: true });
  readOnly = ro;
  const tokenOf = ro.prepare<[string], ReturnType<Cluster["stored"]>>(
    `SELECT version, access_token AS accessToken, refresh_token AS refreshToken, expires_at AS expiresAt
     FROM token_sets WHERE connection_id = ?`,
  );
  const leaseOf = ro.prepare<[string], { holder: string; ttlMs: number }>(
    "SELECT holder, expires_at - acquired_at AS ttlMs FROM refresh_leases WHERE connection_id = ?",
  );
  return {
    fake: f,
    grant,
    connectionId,
    brokers,
    clients: brokers.map((b, i) => createClient(TokenService, transports[i]!(b.url))),
    stored: () => tokenOf.get(connectionId)!,
    lease: () => leaseOf.get(connectionId),
    async reimport() {
      const r = await runCli(["import", "--db", db, "--insecure-no-encryption"], env, `${f.getGrant(grant.grantId)!.refreshToken}\n`);
      if (r.code !== 0 || !r.stdout.includes(connectionId)) throw new Error(`import failed (${r.code}): ${r.stdout} ${r.stderr}`);
    },
  };
}

const refreshEvents = (brokers: ServeProcess[]) => brokers.flatMap((b) => b.logs()).filter((l) => l["event"] === "refresh");

describe("three broker processes on one SQLite file", () => {
  it("300 concurrent callers spread over the three at expiry make exactly 1 upstream refresh", async () => {
    // Once the three listen, the grant is imported again with a short-lived token (3 s: the import lists the
    // tenants with it), so that it expires in real time soon; nobody asks before it does, so no scheduler refreshes
    // it ahead of expiry (a token set counts as in use once asked for).
    const c = await startCluster();
    c.fake.setAccessTokenLifetime(3);
    await c.reimport();
    const before = c.stored();
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
    expect(c.fake.refreshes).toBe(3); // the two imports' and this one
    const after = c.stored();
    expect(after.version).toBe(before.version + 1);
    expect(new Set(results.map((r) => r.token?.accessToken))).toEqual(new Set([after.accessToken]));
    expect(results.every((r) => r.token?.version === BigInt(after.version))).toBe(true);
    // One process refreshed; the others waited on its lease and took the committed token.
    const events = refreshEvents(c.brokers);
    expect(events.filter((e) => e["outcome"] === "ok")).toHaveLength(1);
    expect(events.filter((e) => e["outcome"] !== "ok" && e["outcome"] !== "already_fresh")).toEqual([]);
    expect(c.fake.invalidGrants).toBe(0);
    console.info(`300 callers over 3 processes at expiry: 1 upstream refresh, all answered in ${Math.round(stormMs)} ms`);
  });

  it("a refresh made by process A reaches a WatchToken subscriber on process B within 1 s", async () => {
    const c = await startCluster();
    const b = c.clients[1]!;
    const abort = new AbortController();
    aborts.push(abort);
    const stream = b
      .watchToken({ selector: { case: "connectionId", value: c.connectionId } }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    const next = async (): Promise<WatchTokenResponse> => {
      const r = await stream.next();
      if (r.done) throw new Error("the watch stream ended");
      return r.value;
    };
    const first = await next();
    expect(first.token?.accessToken).toBe(c.stored().accessToken);

    const delays: number[] = [];
    for (const refresher of [0, 2, 0]) {
      const current = c.stored();
      const before = c.fake.tokenEndpointCalls;
      const report = await c.clients[refresher]!.reportExpired({
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
      expect(c.fake.tokenEndpointCalls - before).toBe(1); // B made no refresh of its own
    }
    for (const ms of delays) expect(ms).toBeLessThan(1000);
    console.info(`refresh on A seen by B's watcher after ${delays.map((d) => Math.round(d)).join(", ")} ms`);
  });

  describe.each([{ graceRetry: "same" as const }, { graceRetry: "new" as const }])(
    "grace retry returns the $graceRetry pair",
    ({ graceRetry }) => {
      it("SIGKILL of the lease holder while Xero holds its answer: another process finishes the refresh with the same refresh token, inside the grace period", async () => {
        // Generous enough for a loaded 2-core CI machine: the lease must outlast the upstream timeout.
        const leaseTtlSeconds = 4;
        const upstreamTimeoutMs = 3000;
        const c = await startCluster({
          fake: { graceRetry, graceSeconds: 30 },
          env: {
            TOKENBROKER_UPSTREAM_TIMEOUT_MS: String(upstreamTimeoutMs),
            TOKENBROKER_LEASE_TTL_SECONDS: String(leaseTtlSeconds),
          },
        });
        const before = c.stored();
        const callsBefore = c.fake.tokenEndpointCalls;
        c.fake.setLatency(1000);

        // 150 channels report the current token as rejected, 50 on each process.
        const reports = Array.from({ length: 150 }, (_, i) =>
          c.clients[i % 3]!.reportExpired(
            { selector: { case: "connectionId", value: c.connectionId }, accessToken: before.accessToken },
            { timeoutMs: 15_000 },
          ),
        );
        for (const p of reports) p.catch(() => {});
        await until(() => c.lease() !== undefined, 5000, "a lease");
        expect(c.lease()!.ttlMs).toBe(leaseTtlSeconds * 1000);
        const holderPid = Number(c.lease()!.holder.split(":").at(-2));
        const holder = c.brokers.findIndex((b) => b.pid === holderPid);
        expect(holder, `lease holder ${c.lease()!.holder} is none of the three`).toBeGreaterThanOrEqual(0);
        await until(() => c.fake.tokenEndpointCalls > callsBefore, 5000, "the holder's request to reach the fake");
        await c.brokers[holder]!.kill("SIGKILL");
        const killed = performance.now();
        c.fake.setLatency(0); // later requests are answered at once; the held one still after 1 s

        await until(() => c.stored().version > before.version, 15_000, "another process to commit", 5);
        const recoveryMs = performance.now() - killed;
        // The lease lapses leaseTtlSeconds after it was taken; a waiting caller or a scheduler tick (≤ 1 s) takes over.
        expect(recoveryMs).toBeLessThan(leaseTtlSeconds * 1000 + 1000 + upstreamTimeoutMs);

        const settled = await Promise.allSettled(reports);
        const after = c.stored();
        for (const [i, r] of settled.entries()) {
          if (i % 3 === holder) continue; // its callers lost their connection with it
          expect(r.status, r.status === "rejected" ? String(r.reason) : "").toBe("fulfilled");
          if (r.status === "fulfilled") expect(r.value.token?.accessToken).toBe(after.accessToken);
        }
        expect(after.version).toBe(before.version + 1);
        expect(c.fake.tokenEndpointCalls - callsBefore).toBe(2); // the dead holder's, and the one that finished the job
        expect(after.refreshToken).toBe(c.fake.getGrant(c.grant.grantId)?.refreshToken);
        expect(c.fake.graceViolations).toBe(0);
        expect(c.fake.invalidGrants).toBe(0);
        const state = readOnly!.prepare("SELECT state FROM connections WHERE id = ?").get(c.connectionId) as { state: string };
        expect(state.state).toBe("active");
        const survivors = c.brokers.filter((_, i) => i !== holder);
        expect(refreshEvents(survivors).filter((e) => e["outcome"] === "ok")).toHaveLength(1);
        for (const [i, client] of c.clients.entries()) {
          if (i === holder) continue;
          const { token } = await client.getToken({ selector: { case: "connectionId", value: c.connectionId } });
          expect(token?.accessToken).toBe(after.accessToken);
        }
        console.info(`graceRetry=${graceRetry}: holder killed, refresh finished by another process ${Math.round(recoveryMs)} ms later`);
      });
    },
  );

  it("a lease shorter than the upstream timeout is refused: exit 2, one line naming both", async () => {
    fake = await startFakeXero();
    dir = tempDir();
    const r = await runCli(
      ["serve", "--listen", "127.0.0.1:0", "--db", join(dir.path, "t.db"), "--lease-ttl", "5", ...INSECURE_SERVE_ARGS],
      fakeEnv(fake),
    );
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("--lease-ttl");
    expect(r.stderr).toContain("TOKENBROKER_UPSTREAM_TIMEOUT_MS");
  });
});
