/**
 * `npm run bench -- --quick` end to end: the compiled bench starts its server
 * and load processes, runs every scenario with tiny counts, prints the tables
 * and writes the JSON. Checks that every row is there with numbers; no timing
 * is asserted (the figures of a smoke run mean nothing).
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { BenchReport } from "../bench/report.js";
import type { HostileFigures } from "../bench/scenarios/hostile-neighbour.js";
import type { HostsFigures } from "../bench/scenarios/several-hosts.js";
import type { StoreFigures } from "../bench/scenarios/cached-by-store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { missingPostgres } from "./helpers/postgres-server.js";
import { missingSystemPackage } from "./helpers/system-requirement.js";

// `npm test` compiles src and bench to dist/ before vitest runs; run `npm run build` first when running this file alone.
const BENCH = join(import.meta.dirname, "..", "dist", "bench", "run.js");

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => {
  dir.cleanup();
});

function runBench(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BENCH, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const isNumber = (n: unknown) => typeof n === "number" && Number.isFinite(n);

// The cached-GetToken scenario's load generator is h2load (Debian's nghttp2-client).
const noH2load = missingSystemPackage("h2load", "apt-get install nghttp2-client", ["h2load", "--version"]);
// Scenario 6's second store and scenario 8 need PostgreSQL; without it the bench leaves them out (required in CI).
const noPostgres = missingPostgres();

it.skipIf(noH2load)(
  "bench --quick prints a row for every scenario, writes them as JSON, and profiles every process",
  { timeout: 130_000 },
  async () => {
    const out = join(dir.path, "latest.json");
    const profiles = join(dir.path, "profiles");
    const { code, stdout, stderr } = await runBench(["--quick", "--out", out], { BENCH_CPU_PROF: profiles });
    expect(code, stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, "utf8")) as BenchReport;

    expect(report.quick).toBe(true);
    expect(report.machine.cores).toBeGreaterThan(0);

    // 1. Five protocols, the broker (keys on) and the plain server of each side by side, loaded by h2load.
    const cached = report.cachedGetToken!;
    expect(cached.map((r) => `${r.protocol} vs ${r.plainServer}`)).toEqual([
      "grpc vs @grpc/grpc-js",
      "connect-json-h1 vs connect-node",
      "connect-binary-h1 vs connect-node",
      "connect-json-h2 vs connect-node",
      "connect-binary-h2 vs connect-node",
    ]);
    for (const row of cached) {
      for (const side of [row.broker, row.plain]) {
        expect(side.requests).toBeGreaterThan(0);
        expect(side.errors).toBe(0);
        for (const k of ["rps", "meanMs", "serverCpuPct", "serverCpuUsPerRequest", "dataBytesPerRequest"] as const)
          expect(isNumber(side[k]), k).toBe(true);
      }
      expect(row.ratio).toBeGreaterThan(0);
      expect(stdout).toContain(row.label);
    }

    // 2. The storm: one upstream call per expiry is a correctness figure, so it is checked.
    // As deployed (the systemd unit's V8 flags), then with Node's defaults.
    const storm = report.refreshStorm!;
    expect(storm.rounds).toHaveLength(3);
    expect(storm.nodeDefaults.rounds).toHaveLength(3);
    expect(storm.nodeOptions).toMatch(/--max-old-space-size=\d+/);
    expect(storm.nodeDefaults.nodeOptions).toBe("");
    for (const r of [...storm.rounds, ...storm.nodeDefaults.rounds]) {
      expect(r).toMatchObject({ upstreamCalls: 1, versions: 1, errors: 0 });
      expect(isNumber(r.lastServedMs)).toBe(true);
    }

    // 3. Fan-out: every subscriber got every refresh; memory figures are numbers.
    const fan = report.fanOut!;
    expect(fan.subscribers).toBeGreaterThan(0);
    expect(fan.rounds).toHaveLength(3);
    for (const r of fan.rounds) for (const k of ["refreshMs", "p50Ms", "p99Ms", "maxMs"] as const) expect(isNumber(r[k]), k).toBe(true);
    expect(isNumber(fan.rssPerSubscriber) && isNumber(fan.heapPerSubscriber)).toBe(true);

    // 4. Scale of state: the real `tokenbroker serve` on a small and a large database, run as the systemd
    // unit runs it (its NODE_OPTIONS), and the large one again with Node's defaults.
    const { small, large, largeNodeDefaults } = report.scaleOfState!;
    expect(small.connections).toBe(1);
    expect(large.connections).toBeGreaterThan(small.connections);
    expect(large.tenants).toBe(large.connections * 10);
    const unit = readFileSync(join(import.meta.dirname, "..", "deploy", "tokenbroker.service"), "utf8");
    const deployed = /^Environment="?NODE_OPTIONS=([^"\n]+)"?$/m.exec(unit)?.[1];
    expect(deployed).toMatch(/--max-old-space-size=\d+/);
    expect([small.nodeOptions, large.nodeOptions, largeNodeDefaults.nodeOptions]).toEqual([deployed, deployed, ""]);
    expect(largeNodeDefaults.connections).toBe(large.connections);
    expect(stdout).toContain("(Node's defaults)");
    for (const s of [small, large, largeNodeDefaults]) {
      for (const k of ["listeningMs", "startupMs", "rssMb", "peakRssMb", "rps", "p50Ms", "p99Ms"] as const) {
        expect(isNumber(s[k]), k).toBe(true);
      }
      expect(s.errors).toBe(0);
    }

    // 5. Hostile neighbour: the callers' figures are numbers, the flood is accounted for stream by stream.
    expectHostile(report.hostileNeighbour!);

    // 6. Several hosts: one upstream refresh per expiry and the SIGKILL recovery are correctness figures,
    // on a SQLite file and on PostgreSQL; 8. cached GetToken on PostgreSQL against SQLite.
    expectSeveralHosts(report.severalHosts, "SQLite");
    expectPostgresRows(report, stderr, { stores: true });

    // 7. Long poll: every waiting call answered by the one refresh, with one upstream call; memory beside the streams'.
    const poll = report.longPoll!;
    expect(poll.waiters).toBeGreaterThan(0);
    expect(poll).toMatchObject({ upstreamCalls: 1, wrong: 0 });
    for (const k of ["sendMs", "refreshMs", "p50Ms", "p99Ms", "maxMs", "rssPerWaiter", "heapPerWaiter"] as const)
      expect(isNumber(poll[k]), k).toBe(true);
    expect(isNumber(poll.streams.heapPerSubscriber) && isNumber(poll.streams.p99Ms)).toBe(true);

    // 9. The Xero API proxy against direct calls to the same fake API: every call answered 2xx, none refused by
    // the fake's limits (set out of reach), figures for both sides.
    const proxy = report.xeroProxy!;
    expect(proxy.upstream429s).toBe(0);
    for (const side of [proxy.direct, proxy.proxied, proxy.remote.direct, proxy.remote.proxied]) {
      expect(side.errors).toBe(0);
      expect(side.requests).toBeGreaterThan(0);
      for (const k of ["p50Ms", "p99Ms", "rps"] as const) expect(isNumber(side[k]), k).toBe(true);
    }
    expect(isNumber(proxy.ratio) && isNumber(proxy.remote.ratio) && isNumber(proxy.addedP50Ms)).toBe(true);

    // Every target is judged, and the printed table ends with them.
    expect(report.targets).toHaveLength(noPostgres ? 22 : 26);
    for (const t of report.targets) {
      expect(typeof t.met).toBe("boolean");
      expect(stdout).toContain(t.name);
    }
    // BENCH_CPU_PROF: a CPU profile of the load process and of each server process (two per scenario 1–3).
    const written = readdirSync(profiles).filter((f) => f.endsWith(".cpuprofile"));
    expect(written.length).toBeGreaterThanOrEqual(7);
    for (const f of written.slice(0, 2)) expect(JSON.parse(readFileSync(join(profiles, f), "utf8")).nodes.length).toBeGreaterThan(0);

    // No access token (a JWT) is ever printed.
    expect(stdout + stderr).not.toMatch(/eyJ[\w-]{20,}/);
    for (const heading of [
      "1. Cached GetToken",
      "2. Refresh storm",
      "3. Fan-out",
      "4. Scale of state",
      "5. Hostile neighbour",
      "6. Several hosts",
      "7. Long poll",
      ...(noPostgres ? [] : ["8. Cached GetToken by store"]),
      "Targets",
    ]) {
      expect(stdout).toContain(heading);
    }
  },
);

function expectHostile(h: HostileFigures): void {
  expect(h.callers).toBe(16);
  for (const side of [h.quiet, h.underFlood]) {
    for (const k of ["rps", "p50Ms", "p99Ms", "maxMs"] as const) expect(isNumber(side[k]), k).toBe(true);
    expect(side.errors).toBe(0);
  }
  expect(isNumber(h.peakRssMb) && isNumber(h.rssBeforeMb)).toBe(true);
  const f = h.flood;
  const resets = Object.values(f.reset as Record<string, number>).reduce((a, b) => a + b, 0);
  expect(f.unauthenticated + f.otherStatus + resets + f.open).toBe(f.streams);
  expect(f.slowSockets).toBeGreaterThan(0);
}

function expectSeveralHosts(h: HostsFigures | undefined, store: string): void {
  if (!h) throw new Error(`no several hosts on ${store} in the report`);
  expect(h.store).toBe(store);
  expect(h.hosts).toBe(3);
  expect(h.rounds.length).toBeGreaterThan(0);
  for (const r of h.rounds) {
    expect(r).toMatchObject({ upstreamCalls: 1, versions: 1, errors: 0 });
    expect(r.deliveryP99Ms).toHaveLength(3);
    for (const ms of [...r.deliveryP99Ms, r.deliveryMaxMs, r.lastServedMs]) expect(isNumber(ms)).toBe(true);
  }
  const rec = h.recovery;
  expect(rec.upstreamCalls).toBe(2);
  expect(rec.servedByEveryHost).toBe(true);
  expect(rec.recoveryMs).toBeLessThan(rec.leaseTtlS * 1000 + rec.upstreamTimeoutMs + 1000);
  expect(h.invalidGrants).toBe(0);
}

/** The PostgreSQL rows where PostgreSQL is installed; else none, and one line that says why. */
function expectPostgresRows(report: BenchReport, stderr: string, ran: { stores: boolean }): void {
  if (noPostgres) {
    expect(report.severalHostsOnPostgres).toBeUndefined();
    expect(report.cachedByStore).toBeUndefined();
    expect(stderr).toContain("PostgreSQL 15 is missing (apt-get install postgresql-15): the PostgreSQL rows are left out");
    return;
  }
  expectSeveralHosts(report.severalHostsOnPostgres, "PostgreSQL");
  if (ran.stores) expectStores(report.cachedByStore);
  else expect(report.cachedByStore).toBeUndefined();
}

function expectStores(s: StoreFigures | undefined): void {
  if (!s) throw new Error("no cachedByStore in the report");
  for (const side of [s.postgres, s.sqlite]) {
    expect(side.requests).toBeGreaterThan(0);
    expect(side.errors).toBe(0);
    for (const k of ["rps", "meanMs", "serverCpuPct", "serverCpuUsPerRequest", "dataBytesPerRequest"] as const)
      expect(isNumber(side[k]), k).toBe(true);
  }
  expect(s.ratio).toBeGreaterThan(0);
}

it("bench --only hosts runs the several hosts alone, on SQLite and on PostgreSQL", { timeout: 100_000 }, async () => {
  const out = join(dir.path, "hosts.json");
  const { code, stdout, stderr } = await runBench(["--quick", "--only", "hosts", "--out", out], {});
  expect(code, stderr).toBe(0);
  const report = JSON.parse(readFileSync(out, "utf8")) as BenchReport;
  expect(Object.keys(report)).not.toContain("refreshStorm");
  expectSeveralHosts(report.severalHosts, "SQLite");
  expectPostgresRows(report, stderr, { stores: false });
  const targets = (store: string) => [
    `several hosts on ${store}, upstream refreshes (150 callers over 3 hosts at expiry)`,
    `several hosts on ${store}, every host's watchers after the commit, p99`,
    `several hosts on ${store}, lease holder SIGKILLed at Xero: another host commits`,
  ];
  expect(report.targets.map((t) => t.name)).toEqual([...targets("SQLite"), ...(noPostgres ? [] : targets("PostgreSQL"))]);
  expect(stdout).toContain("6. Several hosts");
  expect(stdout + stderr).not.toMatch(/eyJ[\w-]{20,}/);
});

it("bench --only hostile runs the hostile neighbour alone", { timeout: 60_000 }, async () => {
  const out = join(dir.path, "hostile.json");
  const { code, stdout, stderr } = await runBench(["--quick", "--only", "hostile", "--out", out], {});
  expect(code, stderr).toBe(0);
  const report = JSON.parse(readFileSync(out, "utf8")) as BenchReport;
  expect(Object.keys(report)).not.toContain("cachedGetToken");
  expectHostile(report.hostileNeighbour!);
  expect(report.targets.map((t: { name: string }) => t.name)).toEqual([
    "hostile neighbour, 16 callers' cached GetToken p99",
    "hostile neighbour, server peak RSS",
    "hostile neighbour, flood refused or closed",
  ]);
  expect(stdout).toContain("5. Hostile neighbour");
  expect(stdout).not.toContain("1. Cached GetToken");
  const unknown = await runBench(["--only", "nope"], {});
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toContain("unknown scenario nope");
});
