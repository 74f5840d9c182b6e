import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { ACCOUNTING_PREFIX, type FakeGrant } from "@tokenbroker/fake-xero";
import { TenantRefresh, type TenantCheckEvent } from "../src/broker/tenant-refresh.js";
import { WatchHub } from "../src/broker/watch-hub.js";
import { startBrokerServer } from "../src/server/broker-server.js";
import { importRefreshToken } from "../src/importer.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { IdentityServer } from "../src/upstream/identity-server.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { rejection } from "./helpers/rejection.js";
import { fakeEnv, runCli } from "./helpers/serve-process.js";
import { readStream, type StreamReader } from "./helpers/stream-reader.js";

const MINUTE = 60_000;

/** Polls `check` every 20 ms until it resolves true; throws after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`not so within ${timeoutMs} ms`);
    await delay(20);
  }
}
const INTERVAL = 10 * MINUTE;

describe("organisations added or removed at Xero", () => {
  let f: BrokerFixture;
  let grant: FakeGrant;
  let connectionId: string;
  let orgA: string;
  let orgB: string;
  let events: TenantCheckEvent[];
  const readers: Array<StreamReader<WatchTokenResponse>> = [];

  beforeEach(async () => {
    events = [];
    f = await startBroker({ noImport: true, server: { tenantRefresh: { intervalMs: INTERVAL, listener: (e) => events.push(e) } } });
    grant = f.fake.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    const imported = await importRefreshToken(f.store, f.identity, grant.refreshToken);
    connectionId = imported.connectionId;
    [orgA, orgB] = grant.tenants.map((t) => t.tenantId) as [string, string];
  });
  afterEach(async () => {
    for (const r of readers.splice(0)) r.cancel();
    await f.close();
  });

  const getToken = (tenantId: string) => f.client().getToken({ selector: { case: "tenantId", value: tenantId } });
  function watch(tenantId: string): StreamReader<WatchTokenResponse> {
    const client = f.client();
    const reader = readStream((signal) => client.watchToken({ selector: { case: "tenantId", value: tenantId } }, { signal }));
    readers.push(reader);
    return reader;
  }
  /** What a user does at Xero: disconnects one organisation from the app (DELETE /connections/{id}). */
  async function disconnectAtXero(tenantId: string): Promise<void> {
    const record = await f.store.tokens.getToken(connectionId);
    const id = f.fake.getGrant(grant.grantId)!.tenants.find((t) => t.tenantId === tenantId)!.connectionId;
    const res = await fetch(`${f.fake.connectionsUrl}/${id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${record!.accessToken}` },
    });
    expect(res.status).toBe(204);
  }

  it("a removed organisation answers NOT_FOUND 'disconnected at Xero' after the next re-read; its watchers are told; the status page and `tenants` show it", async () => {
    const watcherB = watch(orgB);
    const watcherA = watch(orgA);
    await watcherB.next(3000);
    await watcherA.next(3000);
    await disconnectAtXero(orgB);
    expect((await getToken(orgB)).token!.tenantIds).toContain(orgB); // not known yet

    f.clock.advance(INTERVAL);
    await f.server.tenants.tick();
    expect(events.map((e) => [e.cause, e.outcome, e.removed.map((t) => t.tenantId), e.added.length])).toEqual([
      ["periodic", "checked", [orgB], 0],
    ]);

    const refused = await rejection(getToken(orgB));
    expect(refused.code).toBe(Code.NotFound);
    expect(refused.rawMessage).toMatch(new RegExp(`tenant ${orgB} \\(Org B\\) was disconnected at Xero`));
    const unknown = await rejection(getToken("no-such-tenant"));
    expect(unknown.code).toBe(Code.NotFound);
    expect(unknown.rawMessage).toMatch(/is not connected/);

    const ended = await watcherB.end(3000);
    expect(ended?.code).toBe(Code.NotFound);
    expect(ended?.rawMessage).toMatch(/disconnected at Xero/);
    expect(watcherA.ended).toBe(false);
    expect((await getToken(orgA)).token!.tenantIds).toEqual([orgA]);

    const checkedIso = new Date(f.clock.now()).toISOString();
    const page = await (await fetch(`${f.server.url}/`)).text();
    expect(page).toMatch(new RegExp(`<tr class="gone" data-tenant-id="${orgB}">.*removed at Xero.*<time datetime="${checkedIso}"`, "s"));
    expect(page).toMatch(
      new RegExp(`<tr class="active" data-tenant-id="${orgA}">.*?<td class="checked"><time datetime="${checkedIso}"`, "s"),
    );

    const table = await runCli(["tenants", "--db", f.dbPath], fakeEnv(f.fake));
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^${orgB}\\s+removed-at-xero\\s+Org B\\s.*${checkedIso}$`, "m"));
    expect(table.stdout).toMatch(new RegExp(`^${orgA}\\s+active\\s+Org A\\s.*${checkedIso}$`, "m"));
    const json = JSON.parse((await runCli(["tenants", "--db", f.dbPath, "--json"], fakeEnv(f.fake))).stdout) as Array<
      Record<string, unknown>
    >;
    expect(json.find((t) => t["tenantId"] === orgB)).toMatchObject({ state: "gone", removedAtXero: true, goneAt: checkedIso });
    expect(json.find((t) => t["tenantId"] === orgA)).toMatchObject({ state: "active", removedAtXero: false, checkedAt: checkedIso });
  });

  it("an organisation the grant gained (a consent elsewhere, a demo company reset to a new id) is served after the next re-read", async () => {
    await disconnectAtXero(orgA); // the reset: the old id goes, a new one comes
    const [reset, orgC] = f.fake.addTenants(grant.grantId, [{ tenantName: "Org A" }, { tenantName: "Org C" }]);
    expect((await rejection(getToken(orgC!.tenantId))).rawMessage).toMatch(/is not connected/);

    f.clock.advance(INTERVAL);
    await f.server.tenants.tick();
    expect(events.map((e) => [e.outcome, e.removed.map((t) => t.tenantId), e.added.map((t) => t.tenantName).sort()])).toEqual([
      ["checked", [orgA], ["Org A", "Org C"]],
    ]);
    const served = await getToken(orgC!.tenantId);
    expect([...served.token!.tenantIds].sort()).toEqual([orgB, reset!.tenantId, orgC!.tenantId].sort());
    expect((await getToken(reset!.tenantId)).token!.accessToken).toBe(served.token!.accessToken);
    expect((await rejection(getToken(orgA))).rawMessage).toMatch(/disconnected at Xero/);
  });

  it("without a valid access token it skips, never refreshing for it, and re-reads once a refresh brought one", async () => {
    await disconnectAtXero(orgB);
    const record = await f.store.tokens.getToken(connectionId);
    f.clock.set(record!.expiresAt + 1000);
    const calls = f.fake.tokenEndpointCalls;
    await f.server.tenants.tick();
    expect(events.map((e) => e.outcome)).toEqual(["no_valid_token"]);
    expect(f.fake.tokenEndpointCalls).toBe(calls);

    await getToken(orgA); // a caller needs a token: the refresh
    expect(f.fake.tokenEndpointCalls).toBe(calls + 1);
    await f.server.tenants.tick();
    expect(events.map((e) => e.outcome)).toEqual(["no_valid_token", "checked"]);
    expect((await rejection(getToken(orgB))).code).toBe(Code.NotFound);
  });

  it("a grant that lists no organisation (revoked at Xero) marks none removed: the refresh finds the revocation", async () => {
    f.fake.revokeGrant(grant.grantId);
    f.clock.advance(INTERVAL);
    await f.server.tenants.tick();
    expect(events.map((e) => [e.outcome, e.removed.length])).toEqual([["failed", 0]]);
    expect(events[0]!.error).toMatch(/lists no organisation/);
    expect([...(await getToken(orgA)).token!.tenantIds].sort()).toEqual([orgA, orgB].sort());
    f.clock.set((await f.store.tokens.getToken(connectionId))!.expiresAt + 1000);
    expect((await rejection(getToken(orgA))).code).toBe(Code.FailedPrecondition);
  });

  it("recheck (the API proxy's 403): re-reads at once, one read for a burst, at most once a minute", async () => {
    await disconnectAtXero(orgB);
    f.clock.advance(MINUTE);
    const burst = await Promise.all(Array.from({ length: 20 }, () => f.server.tenants.recheck(connectionId)));
    expect(new Set(burst).size).toBe(1);
    expect(burst[0]!.checked).toBe(true);
    expect(burst[0]!.removed.map((t) => t.tenantId)).toEqual([orgB]);
    expect(events.map((e) => [e.cause, e.outcome])).toEqual([["recheck", "checked"]]);
    expect(await f.server.tenants.recheck(connectionId)).toEqual({ checked: false, removed: [], added: [] });
    f.clock.advance(MINUTE);
    expect(await f.server.tenants.recheckTenant(orgA)).toEqual({ checked: true, removed: [], added: [] });
    expect(await f.server.tenants.recheckTenant("no-such-tenant")).toEqual({ checked: false, removed: [], added: [] });
    expect((await rejection(getToken(orgB))).rawMessage).toMatch(/disconnected at Xero/);
  });

  it("a 403 from Xero through the API proxy re-reads the grant's organisations at once: the next GetToken says it was disconnected at Xero", async () => {
    const proxied = await startBrokerServer({
      port: 0,
      store: f.store,
      identity: f.identity,
      clock: f.clock,
      proxy: { apiUrl: f.fake.apiUrl, refused: [`${f.fake.issuer}/connect`, `${f.fake.issuer}/identity`] },
    });
    try {
      await proxied.scheduler.stop();
      const call = (tenantId: string) =>
        fetch(`${proxied.url}/xero${ACCOUNTING_PREFIX}Organisation`, { headers: { "xero-tenant-id": tenantId } });
      expect((await call(orgB)).status).toBe(200);
      await disconnectAtXero(orgB);
      f.clock.advance(MINUTE);
      const forbidden = await call(orgB);
      expect(forbidden.status).toBe(403); // Xero's answer, passed through
      await until(async () => (await rejection(getToken(orgB)).catch(() => undefined))?.code === Code.NotFound, 5000);
      expect((await rejection(getToken(orgB))).rawMessage).toMatch(new RegExp(`tenant ${orgB} \\(Org B\\) was disconnected at Xero`));
      expect((await call(orgA)).status).toBe(200);
    } finally {
      await proxied.close();
    }
  });

  it("brokers sharing the store: one re-read per connection and interval, whoever ticks; the others' watchers are told", async () => {
    let listed = 0;
    const counting: Pick<IdentityServer, "listConnections"> = {
      listConnections: (token, options) => {
        listed++;
        return f.identity.listConnections(token, options);
      },
    };
    const other = openSqliteStore({ path: f.dbPath, clock: f.clock });
    try {
      const otherHub = new WatchHub();
      const others = [
        new TenantRefresh(other, counting, otherHub, f.clock, { intervalMs: INTERVAL }),
        new TenantRefresh(f.store, counting, new WatchHub(), f.clock, { intervalMs: INTERVAL }),
      ];
      // A watcher of Org B in the other "process".
      const sub = otherHub.subscribe(connectionId, undefined, orgB);
      let endReason: unknown;
      sub.listen(
        () => {},
        (reason) => (endReason = reason),
      );
      await disconnectAtXero(orgB);
      f.clock.advance(INTERVAL);
      await Promise.all([f.server.tenants.tick(), ...others.map((t) => t.tick())]);
      expect(listed + events.filter((e) => e.outcome === "checked").length).toBe(1);
      // Whoever did it, the other process's watcher of the removed tenant ends at its next pass (once its read
      // cache has seen the commit: a few ms).
      for (let i = 0; i < 100 && endReason === undefined; i++) {
        await delay(10);
        await others[0]!.tick();
      }
      expect(String(endReason)).toMatch(/disconnected at Xero/);
    } finally {
      await other.close();
    }
  });
});
