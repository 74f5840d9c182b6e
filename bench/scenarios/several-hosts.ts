import { fakeXeroEnv } from "../support/fake-xero-env.js";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { startLoadHost, type BenchContext } from "../context.js";
import { forkHost, type Host } from "../ipc.js";
import { createGrpcClient, type BenchSelector } from "../load/clients.js";
import type { LoadHostApi } from "../load/main.js";
import { runCli, startServeProcess, type LogLine, type ServeProcess } from "../server/serve-process.js";
import { quantile, round } from "../stats.js";
import type { UpstreamHostApi } from "../upstream/main.js";

/** The hosts' addresses: one machine's loopback, as three machines. */
const ADDRESSES = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
/** Access tokens of the fake Xero live this long, s: each round waits for one to expire. */
const TOKEN_LIFETIME_S = 6;
/** The lease and the upstream timeout of the SIGKILL part (the lease must outlast the timeout). */
const LEASE_TTL_S = 4;
const UPSTREAM_TIMEOUT_MS = 3000;

/** One storm at expiry over the three hosts. */
export interface HostsRound {
  /** Calls to the fake Xero's token endpoint for this expiry, the storm's or a scheduler's just before it (must be 1). */
  upstreamCalls: number;
  /** The host (1–3) that committed the refresh. */
  committedBy: number;
  /** Per host, the p99 of its watchers' delivery of the new version after the commit, ms. */
  deliveryP99Ms: number[];
  /** The latest delivery to any watcher after the commit, ms. */
  deliveryMaxMs: number;
  /** From the first request sent to the last answer, ms (the slowest host's callers). */
  lastServedMs: number;
  /** Distinct token versions handed out (must be one, the new one). */
  versions: number;
  errors: number;
}

/** The lease holder killed (SIGKILL) while the fake Xero holds its request. */
export interface HostsRecovery {
  leaseTtlS: number;
  upstreamTimeoutMs: number;
  /** From the kill to another host's commit (its `refresh` log line), ms. */
  recoveryMs: number;
  /** Token-endpoint calls for that expiry: the dead holder's and the one that finished (must be 2). */
  upstreamCalls: number;
  /** Whether both surviving hosts then served the new version. */
  servedByEveryHost: boolean;
}

/** The several-hosts scenario's figures. */
export interface HostsFigures {
  /** The shared store's kind, e.g. "SQLite". */
  store: string;
  hosts: number;
  callers: number;
  watchersPerHost: number;
  upstreamLatencyMs: number;
  rounds: HostsRound[];
  /** Worst round. */
  upstreamCalls: number;
  /** Per host, the worst round's p99 delivery after the commit, ms. */
  deliveryP99Ms: number[];
  recovery: HostsRecovery;
  /** invalid_grant answers of the fake Xero during the whole scenario (must be 0). */
  invalidGrants: number;
}

/** Where the hosts' shared store is: by default a new SQLite file. */
export interface SharedStore {
  /** Its kind, as the report names it. */
  name: string;
  /** A new, empty store for this run: what `--db` takes (a file path, a `postgres://` URL). */
  location(dir: string): Promise<string>;
}

const SQLITE_FILE: SharedStore = { name: "SQLite", location: async (dir) => join(dir, "hosts.db") };

/**
 * Several hosts: three `tokenbroker serve` processes (the compiled CLI) on 127.0.0.1, 127.0.0.2 and
 * 127.0.0.3, one port number, sharing one store (`store`: a new SQLite file unless told otherwise), tokens
 * encrypted at rest, no API keys (loopback).
 * Each round, the token is refreshed through host 1 (ReportExpired), then expires: `callers` GetToken
 * (1,000; 150 with `--quick`), a third on each host, sent the moment it has, with the fake Xero answering
 * after 200 ms; `watchersPerHost` WatchToken streams on each host (in a second load process, so that the
 * callers' answers do not delay their clock) time the new version's arrival against the committing host's
 * `refresh` log line (written right after the commit; one machine, one wall clock). Then the lease holder is
 * SIGKILLed while the fake Xero holds its request: how long until another host has committed.
 */
export async function benchSeveralHosts(ctx: BenchContext, store: SharedStore = SQLITE_FILE): Promise<HostsFigures> {
  const callers = ctx.quick ? 150 : 1000;
  const watchersPerHost = ctx.quick ? 10 : 100;
  const roundCount = ctx.quick ? 1 : 3;
  const upstreamLatencyMs = 200;
  const dir = mkdtempSync(join(tmpdir(), "tokenbroker-bench-hosts-"));
  const upstream = await forkHost<UpstreamHostApi>(new URL("../upstream/main.js", import.meta.url));
  const watchLoad: Host<LoadHostApi> = await startLoadHost();
  const hosts: ServeProcess[] = [];
  try {
    const fake = await upstream.call("start");
    await upstream.call("setAccessTokenLifetime", TOKEN_LIFETIME_S);
    const env = fakeXeroEnv(fake, {
      TOKENBROKER_ENCRYPTION_KEY: randomBytes(32).toString("base64"),
      TOKENBROKER_UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
      TOKENBROKER_LEASE_TTL_SECONDS: String(LEASE_TTL_S),
    });
    const db = await store.location(dir);
    const imported = await runCli(["import", "--db", db, "--json"], env, `${await upstream.call("addGrant", ["Bench Org A"])}\n`);
    if (imported.code !== 0) throw new Error(`import failed: ${imported.stderr}`);
    const selector: BenchSelector = { case: "connectionId", value: (JSON.parse(imported.stdout) as { connectionId: string }).connectionId };

    // Refresh at expiry, not at half-life: the storm meets the expired token.
    const serve = (address: string, port: number) =>
      startServeProcess(["--db", db, "--listen", `${address}:${port}`, "--insecure-no-auth", "--lead-time", "0.01"], env);
    hosts.push(await serve(ADDRESSES[0]!, 0));
    const port = Number(new URL(hosts[0]!.url).port);
    hosts.push(...(await Promise.all(ADDRESSES.slice(1).map((a) => serve(a, port)))));
    const urls = hosts.map((h) => h.url);
    const clients = urls.map((url) => createGrpcClient(url));

    await watchLoad.call("openHostWatchers", { urls, perHost: watchersPerHost, selector, timeoutMs: 10_000 });
    for (const [i, url] of urls.entries()) {
      await ctx.load.call("prepareStorm", `hosts-${i}`, { url, callers: Math.ceil(callers / urls.length), connections: 2, selector });
    }

    const rounds: HostsRound[] = [];
    for (let r = 0; r < roundCount; r++) {
      // A fresh token (refreshed through host 1 now), on every watcher; then the storm the moment it expires.
      const { token: current } = await clients[0]!.getToken({ selector });
      const { token } = await clients[0]!.reportExpired({ selector, accessToken: current!.accessToken });
      await watchLoad.call("hostArrivals", Number(token!.version));
      await upstream.call("setLatency", upstreamLatencyMs);
      // Counted from before the expiry: a host's scheduler may refresh just before it, and then the storm finds the new token.
      const before = await upstream.call("tokenEndpointCalls");
      const logged = hosts.map((h) => h.logs().length);
      await delay(Math.max(0, timestampMs(token!.expiresAt!) - Date.now()) + 20);
      const storms = await Promise.all(urls.map((_, i) => ctx.load.call("fireStorm", `hosts-${i}`)));
      const upstreamCalls = (await upstream.call("tokenEndpointCalls")) - before;
      await upstream.call("setLatency", 0);
      const version = Number(token!.version) + 1;
      const commit = committed(hosts, version);
      const arrivals = await watchLoad.call("hostArrivals", version);
      const delays = arrivals.map((host) => host.map((at) => at - commit.at).sort((a, b) => a - b));
      const figures: HostsRound = {
        upstreamCalls,
        committedBy: commit.host + 1,
        deliveryP99Ms: delays.map((d) => round(quantile(d, 0.99), 1)),
        deliveryMaxMs: round(Math.max(...delays.flat()), 1),
        lastServedMs: round(Math.max(...storms.map((s) => s.lastServedMs)), 1),
        versions: new Set(storms.flatMap((s) => s.versions)).size,
        errors: storms.reduce((n, s) => n + s.errors, 0),
      };
      rounds.push(figures);
      if (upstreamCalls !== 1 || figures.errors > 0) ctx.progress(`several hosts ${r + 1} missed: ${refreshTrouble(hosts, logged)}`);
      ctx.progress(
        `several hosts ${r + 1}: ${callers} callers over 3 hosts, ${upstreamCalls} upstream call(s), host ${figures.committedBy} committed; ` +
          `watchers' p99 after the commit per host ${figures.deliveryP99Ms.join(", ")} ms`,
      );
    }
    await watchLoad.call("closeHostWatchers");

    const recovery = await killTheHolder(ctx, upstream, hosts, clients, selector);
    return {
      store: store.name,
      hosts: hosts.length,
      callers,
      watchersPerHost,
      upstreamLatencyMs,
      rounds,
      upstreamCalls: Math.max(...rounds.map((x) => x.upstreamCalls)),
      deliveryP99Ms: ADDRESSES.map((_, h) => Math.max(...rounds.map((x) => x.deliveryP99Ms[h]!))),
      recovery,
      invalidGrants: await upstream.call("invalidGrants"),
    };
  } finally {
    for (const h of hosts) await h.stop("SIGKILL");
    await watchLoad.stop();
    await upstream.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Host 1 refreshes (ReportExpired) while the fake Xero holds its request; it is SIGKILLed once the request
 * has arrived. The lease lapses `LEASE_TTL_S` after it was taken, and the next scheduler tick of host 2 or 3
 * (once a second) finishes the refresh with the same refresh token, inside Xero's grace period.
 */
async function killTheHolder(
  ctx: BenchContext,
  upstream: Host<UpstreamHostApi>,
  hosts: ServeProcess[],
  clients: Array<ReturnType<typeof createGrpcClient>>,
  selector: BenchSelector,
): Promise<HostsRecovery> {
  const { token: current } = await clients[0]!.getToken({ selector });
  const version = Number(current!.version) + 1;
  await upstream.call("setLatency", 1000);
  const before = await upstream.call("tokenEndpointCalls");
  const held = clients[0]!.reportExpired({ selector, accessToken: current!.accessToken }).catch(() => undefined);
  while ((await upstream.call("tokenEndpointCalls")) === before) await delay(2);
  const killedAt = performance.timeOrigin + performance.now();
  await hosts[0]!.stop("SIGKILL");
  await held;
  await upstream.call("setLatency", 0);
  const deadline = performance.now() + LEASE_TTL_S * 1000 + UPSTREAM_TIMEOUT_MS + 5000;
  let commit: { host: number; at: number } | undefined;
  while (!commit && performance.now() < deadline) {
    await delay(10);
    commit = committedOrNot(hosts, version);
  }
  if (!commit) throw new Error("no surviving host finished the dead holder's refresh");
  const served = await Promise.all(clients.slice(1).map((c) => c.getToken({ selector })));
  const recovery: HostsRecovery = {
    leaseTtlS: LEASE_TTL_S,
    upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS,
    recoveryMs: round(commit.at - killedAt, 0),
    upstreamCalls: (await upstream.call("tokenEndpointCalls")) - before,
    servedByEveryHost: served.every((s) => Number(s.token?.version) === version),
  };
  ctx.progress(`several hosts: the lease holder SIGKILLed at Xero; host ${commit.host + 1} committed ${recovery.recoveryMs} ms later`);
  return recovery;
}

/** The host whose `refresh` line says it committed `version`, and the line's time (ms since the epoch). */
function committedOrNot(hosts: readonly ServeProcess[], version: number): { host: number; at: number } | undefined {
  for (const [host, h] of hosts.entries()) {
    const line = h.logs().find((l: LogLine) => l["event"] === "refresh" && l["outcome"] === "ok" && l["version"] === version);
    if (line) return { host, at: Number(line["time"]) };
  }
  return undefined;
}

/** What the hosts logged about their refreshes and errors since `from` (a count of lines per host): outcomes and error messages, never a token. */
function refreshTrouble(hosts: readonly ServeProcess[], from: readonly number[]): string {
  const seen = new Map<string, number>();
  for (const [i, h] of hosts.entries()) {
    for (const line of h.logs().slice(from[i])) {
      const event = String(line["event"] ?? line["msg"] ?? "");
      if (event !== "refresh" && Number(line["level"]) < 40) continue;
      const what = `host ${i + 1} ${event}${line["outcome"] ? ` ${String(line["outcome"])}` : ""}${line["error"] ? `: ${String(line["error"])}` : ""}`;
      seen.set(what, (seen.get(what) ?? 0) + 1);
    }
  }
  return [...seen].map(([what, n]) => (n > 1 ? `${what} (×${n})` : what)).join("; ") || "nothing logged";
}

function committed(hosts: readonly ServeProcess[], version: number): { host: number; at: number } {
  const c = committedOrNot(hosts, version);
  if (!c) throw new Error(`no host logged the commit of version ${version}`);
  return c;
}
