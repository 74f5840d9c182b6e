import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TokenService, type WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { protocols, startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { docSnippet } from "./helpers/doc-snippets.js";
import { scrapeMetrics, type Scrape } from "./helpers/prometheus-text.js";
import { eventually, readStream, type StreamReader } from "./helpers/stream-reader.js";
import { missingSystemPackage } from "./helpers/system-requirement.js";

const byName = (prefix: string) => protocols.find((p) => p.name.startsWith(prefix))!;
const grpc = byName("gRPC (HTTP/2)");
const grpcWeb = byName("gRPC-Web");
const connectJson = byName("Connect JSON");

/** `after - before` for one series (a missing series counts as 0). */
function delta(before: Scrape, after: Scrape, name: string, labels: Record<string, string> = {}): number {
  return (after.value(name, labels) ?? 0) - (before.value(name, labels) ?? 0);
}

describe("GET /metrics", () => {
  let f: BrokerFixture;
  const readers: Array<StreamReader<WatchTokenResponse>> = [];

  beforeEach(async () => {
    f = await startBroker();
  });
  afterEach(async () => {
    for (const r of readers.splice(0)) r.cancel();
    await f?.close();
  });

  function watch(protocol: (typeof protocols)[number]): StreamReader<WatchTokenResponse> {
    const client = f.client(protocol.transport);
    const reader = readStream((signal) => client.watchToken({ selector: { case: "tenantId", value: f.tenantId } }, { signal }));
    readers.push(reader);
    return reader;
  }

  it("after a storm of 300 GetToken at expiry: one refresh, refreshes per expiry 1, 300 tokens served, waits counted", async () => {
    const watchers = [watch(grpc), watch(grpcWeb)];
    const firsts = await Promise.all(watchers.map((w) => w.next(2000)));
    const old = firsts[0]!.token!;
    await f.expireToken();
    const before = await scrapeMetrics(f.server.url);
    const callsBefore = f.fake.tokenEndpointCalls;

    f.fake.setLatency(100); // keep the refresh in flight while callers pile up
    const grpcClient = f.client(grpc.transport);
    const jsonClient = f.client(connectJson.transport);
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        (i % 2 === 0 ? grpcClient : jsonClient).getToken({ selector: { case: "tenantId", value: f.tenantId } }),
      ),
    );
    expect(new Set(results.map((r) => r.token?.version))).toEqual(new Set([old.version + 1n]));
    for (const w of watchers) expect((await w.next(3000)).token?.version).toBe(old.version + 1n);
    const after = await scrapeMetrics(f.server.url);

    // What the token endpoint saw, and what the metrics say: one refresh for this expiry.
    expect(f.fake.tokenEndpointCalls - callsBefore).toBe(1);
    expect(delta(before, after, "tokenbroker_refreshes_total", { cause: "caller", outcome: "ok" })).toBe(1);
    expect(delta(before, after, "tokenbroker_refreshes_total", { outcome: "ok" })).toBe(1);
    expect(after.value("tokenbroker_refreshes_per_expiry", { connection_id: f.connectionId })).toBe(1);
    expect(delta(before, after, "tokenbroker_upstream_request_seconds_count", { operation: "refresh", outcome: "ok" })).toBe(1);

    // 300 tokens served by GetToken, labelled by protocol; 2 more by the watch streams.
    expect(delta(before, after, "tokenbroker_tokens_served_total", { rpc: "GetToken" })).toBe(300);
    expect(delta(before, after, "tokenbroker_tokens_served_total", { rpc: "GetToken", protocol: "grpc" })).toBe(150);
    expect(delta(before, after, "tokenbroker_tokens_served_total", { rpc: "GetToken", protocol: "connect" })).toBe(150);
    expect(after.value("tokenbroker_tokens_served_total", { rpc: "WatchToken", protocol: "grpc" })).toBe(2);
    expect(after.value("tokenbroker_tokens_served_total", { rpc: "WatchToken", protocol: "grpc-web" })).toBe(2);

    // Callers that arrived while the token was expired waited for the one refresh (~100 ms upstream).
    const waited = delta(before, after, "tokenbroker_refresh_wait_seconds_count", { cause: "caller", outcome: "ok" });
    expect(waited).toBeGreaterThanOrEqual(1);
    expect(waited).toBeLessThanOrEqual(300);
    const waitSum = delta(before, after, "tokenbroker_refresh_wait_seconds_sum", { cause: "caller" });
    expect(waitSum / waited).toBeGreaterThan(0.05);
    expect(waitSum / waited).toBeLessThan(5);

    // State read at scrape time.
    expect(after.value("tokenbroker_watch_streams")).toBe(f.server.broker.hub.size);
    expect(after.value("tokenbroker_watch_streams")).toBe(2);
    expect(after.value("tokenbroker_connections", { state: "active" })).toBe(1);
    expect(after.value("tokenbroker_connections", { state: "needs_reauthorization" })).toBe(0);
    const accessLeft = after.value("tokenbroker_access_token_expires_in_seconds", { connection_id: f.connectionId })!;
    expect(accessLeft).toBeGreaterThan(1700);
    expect(accessLeft).toBeLessThanOrEqual(1800);
    const refreshLeftDays = after.value("tokenbroker_refresh_token_expires_in_seconds", { connection_id: f.connectionId })! / 86_400;
    expect(refreshLeftDays).toBeGreaterThan(59.9);
    expect(refreshLeftDays).toBeLessThanOrEqual(60);
    expect(after.value("process_start_time_seconds")).toBeGreaterThan(0);

    // Closing a stream shows at the next scrape.
    readers[0]!.cancel();
    await eventually(() => f.server.broker.hub.size === 1, 3000, "the stream to close");
    expect((await scrapeMetrics(f.server.url)).value("tokenbroker_watch_streams")).toBe(1);

    // No token or secret anywhere in the exposition.
    const stored = await f.store.tokens.getToken(f.connectionId);
    for (const secret of [old.accessToken, results[0]!.token!.accessToken, stored!.refreshToken, f.fake.clientSecret]) {
      expect(after.text).not.toContain(secret);
    }
  });

  it("a revoked grant shows as needs_reauthorization and an invalid_grant refresh", async () => {
    const grant = f.fake.addGrant({ tenants: [{ tenantName: "Org C" }] });
    const { importRefreshToken } = await import("../src/importer.js");
    const imported = await importRefreshToken(f.store, f.identity, grant.refreshToken);
    f.fake.revokeGrant(grant.grantId);
    const token = await f.store.tokens.getToken(imported.connectionId);
    f.clock.set(token!.expiresAt + 1000);
    const error = await f
      .client()
      .getToken({ selector: { case: "connectionId", value: imported.connectionId } })
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    expect(error?.code).toBe(Code.FailedPrecondition);

    const m = await scrapeMetrics(f.server.url);
    expect(m.value("tokenbroker_refreshes_total", { cause: "caller", outcome: "invalid_grant" })).toBe(1);
    expect(m.value("tokenbroker_connections", { state: "active" })).toBe(1);
    expect(m.value("tokenbroker_connections", { state: "needs_reauthorization" })).toBe(1);
    expect(m.value("tokenbroker_connection_needs_reauthorization", { connection_id: imported.connectionId })).toBe(1);
    expect(m.value("tokenbroker_connection_needs_reauthorization", { connection_id: f.connectionId })).toBe(0);
    expect(m.value("tokenbroker_upstream_request_seconds_count", { operation: "refresh", outcome: "invalid_grant" })).toBe(1);
    expect(m.value("tokenbroker_refresh_wait_seconds_count", { cause: "caller", outcome: "error" })).toBe(1);
  });
});

describe("refreshes per expiry across two broker processes", () => {
  let f: BrokerFixture;
  let storeB: Store;
  let serverB: BrokerServer;

  beforeEach(async () => {
    f = await startBroker();
    // A second broker on the same database file, as a second process would be.
    storeB = openSqliteStore({ path: f.dbPath, clock: f.clock });
    serverB = await startBrokerServer({ port: 0, store: storeB, identity: f.identity, clock: f.clock, processMetrics: false });
    await serverB.scheduler.stop();
  });
  afterEach(async () => {
    await serverB?.close();
    await storeB?.close();
    await f?.close();
  });

  it("reads 2 in the broker that spent the refresh token a second time, 1 in the other", async () => {
    await f.expireToken();
    const callsBefore = f.fake.tokenEndpointCalls;
    f.fake.setLatency(300);
    // Broker A starts the refresh and takes the lease...
    const a = f.client().getToken({ selector: { case: "tenantId", value: f.tenantId } });
    await eventually(() => f.server.broker.refresher.isRefreshing(f.connectionId), 2000, "A to start refreshing");
    await delay(50);
    // ...its lease lapses while the token endpoint is slow, and broker B refreshes the same version again.
    f.clock.advance(31_000);
    const clientB = createClient(TokenService, grpc.transport(serverB.url));
    const b = clientB.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    const settled = await Promise.allSettled([a, b]);
    // One of the two callers got the token; the other may get UNAVAILABLE (its refresh lost the race).
    expect(settled.some((r) => r.status === "fulfilled")).toBe(true);

    // The token endpoint saw the refresh token of one version spent twice, and so do the metrics:
    // the broker whose refresh lost reads 2 (its own and the other's), the other one reads 1.
    expect(f.fake.tokenEndpointCalls - callsBefore).toBe(2);
    const mA = await scrapeMetrics(f.server.url);
    const mB = await scrapeMetrics(serverB.url);
    const gauges = [mA, mB].map((m) => m.value("tokenbroker_refreshes_per_expiry", { connection_id: f.connectionId }));
    expect(gauges.sort()).toEqual([1, 2]);
    expect(mB.value("process_start_time_seconds")).toBeUndefined(); // processMetrics: false
  });
});

describe("deploy/prometheus-alerts.yml", () => {
  const root = join(import.meta.dirname, "..");

  const noYaml = missingSystemPackage("PyYAML", "apt-get install python3-yaml", ["/usr/bin/python3", "-c", "import yaml"]);

  it.skipIf(noYaml)(
    "parses, has the two promised alerts, names only exported metrics, and is the copy in docs/observability.md",
    async () => {
      const text = readFileSync(join(root, "deploy", "prometheus-alerts.yml"), "utf8");
      // promtool is not installed here: PyYAML (Debian's python3-yaml) checks that it is YAML at all.
      const parsed = JSON.parse(
        execFileSync("/usr/bin/python3", ["-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"], {
          input: text,
        }).toString(),
      ) as { groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; labels: Record<string, string> }> }> };
      const rules = parsed.groups.flatMap((g) => g.rules);
      expect(rules.map((r) => r.alert)).toEqual(
        expect.arrayContaining(["TokenbrokerDoubleRefresh", "TokenbrokerConnectionNeedsReauthorization"]),
      );
      expect(rules.find((r) => r.alert === "TokenbrokerDoubleRefresh")!.expr).toMatch(/tokenbroker_refreshes_per_expiry\)? > 1$/);
      for (const r of rules) expect(r.labels["severity"]).toMatch(/^(critical|warning)$/);

      // Every metric an expression names is one a broker exports (a typo would make an alert that never fires).
      const f = await startBroker();
      try {
        const exported = new Set((await scrapeMetrics(f.server.url)).text.match(/^# TYPE (\S+)/gm)!.map((l) => l.slice(7)));
        const named = rules.flatMap((r) => r.expr.match(/tokenbroker_[a-z_]+/g) ?? []);
        expect(named.length).toBeGreaterThanOrEqual(rules.length);
        for (const name of named) expect(exported, name).toContain(name);
      } finally {
        await f.close();
      }
      expect(docSnippet("docs/observability.md", "prometheus-alerts")).toBe(text);
    },
  );
});
