import type { BenchReport, TargetCheck } from "./report.js";

/** Checks each figure against its target (of issues 7, 12 and 13). */
export function checkTargets(r: Omit<BenchReport, "targets">): TargetCheck[] {
  return [
    ...(r.cachedGetToken ? cachedTargets(r.cachedGetToken) : []),
    ...(r.refreshStorm ? stormTargets(r.refreshStorm) : []),
    ...(r.fanOut ? fanOutTargets(r.fanOut) : []),
    ...(r.scaleOfState ? scaleTargets(r.scaleOfState) : []),
    ...(r.hostileNeighbour ? hostileTargets(r.hostileNeighbour) : []),
    ...(r.severalHosts ? hostsTargets(r.severalHosts) : []),
    ...(r.severalHostsOnPostgres ? hostsTargets(r.severalHostsOnPostgres) : []),
    ...(r.longPoll ? longPollTargets(r.longPoll) : []),
    ...(r.cachedByStore ? storeTargets(r.cachedByStore) : []),
    ...(r.xeroProxy ? xeroProxyTargets(r.xeroProxy) : []),
  ];
}

function xeroProxyTargets(x: NonNullable<BenchReport["xeroProxy"]>): TargetCheck[] {
  return [
    {
      name: "Xero API proxy, added latency (p50 proxied − p50 direct, sequential calls)",
      target: "< 1 ms",
      measured: `${x.addedP50Ms} ms (${x.proxied.p50Ms} vs ${x.direct.p50Ms} ms; p99 ${x.proxied.p99Ms} vs ${x.direct.p99Ms} ms)`,
      met: x.addedP50Ms < 1,
    },
    {
      name: `Xero API proxy ÷ direct req/s (POST /Invoices, ${x.remote.connections} HTTP/1.1 connections, API answering in ${x.remote.latencyMs} ms)`,
      target: "≥ 0.9",
      measured:
        `${x.remote.ratio} (rounds ${x.remote.ratios.join(", ")}; ${x.remote.proxied.rps} vs ${x.remote.direct.rps}/s); ` +
        `API answering at once on the same 2 cores (CPU-bound): ${x.ratio} (${x.proxied.rps} vs ${x.direct.rps}/s); ` +
        `429s from the fake Xero: ${x.upstream429s}; not answered 2xx: ${x.proxied.errors + x.remote.proxied.errors} proxied, ${x.direct.errors + x.remote.direct.errors} direct`,
      met:
        x.remote.ratio >= 0.9 &&
        x.proxied.errors + x.remote.proxied.errors === 0 &&
        x.direct.errors + x.remote.direct.errors === 0 &&
        x.upstream429s === 0,
    },
  ];
}

function cachedTargets(rows: NonNullable<BenchReport["cachedGetToken"]>): TargetCheck[] {
  return rows.map((row) => ({
    name: `cached GetToken, ${row.label}: broker (API keys on) ÷ plain ${row.plainServer} req/s`,
    target: "≥ 0.9",
    measured: `${row.ratio} (rounds ${row.ratios.join(", ")}); CPU ratio ${row.cpuRatio} (${row.broker.serverCpuUsPerRequest} vs ${row.plain.serverCpuUsPerRequest} µs per call)`,
    met: row.ratio >= 0.9 && row.broker.errors === 0,
  }));
}

function stormTargets(s: NonNullable<BenchReport["refreshStorm"]>): TargetCheck[] {
  return [
    {
      name: `refresh storm, upstream calls (${s.callers} callers)`,
      target: "1 per expiry",
      measured: [...s.rounds, ...s.nodeDefaults.rounds].map((x) => x.upstreamCalls).join(", "),
      met: [...s.rounds, ...s.nodeDefaults.rounds].every((x) => x.upstreamCalls === 1 && x.versions === 1 && x.errors === 0),
    },
    {
      name: "refresh storm, last caller served",
      target: `< ${s.upstreamLatencyMs + 50} ms`,
      measured:
        `${s.lastServedMs} ms as deployed (worst of ${s.rounds.length}; bare server ${s.bareLastServedMs} ms); ` +
        `Node's defaults: ${s.nodeDefaults.lastServedMs} ms (bare ${s.nodeDefaults.bareLastServedMs} ms)`,
      met: s.lastServedMs < s.upstreamLatencyMs + 50,
    },
  ];
}

function fanOutTargets(f: NonNullable<BenchReport["fanOut"]>): TargetCheck[] {
  return [
    {
      name: `fan-out to ${f.subscribers.toLocaleString("en")} subscribers, p99`,
      target: "< 1000 ms",
      measured: `${f.p99Ms} ms (worst of ${f.rounds.length}; bare server ${f.bare.p99Ms} ms)`,
      met: f.p99Ms < 1000,
    },
    {
      name: "fan-out, server memory per subscriber",
      target: "< 10 KB",
      measured: `${kb(f.rssPerSubscriber)} RSS, ${kb(f.heapPerSubscriber)} heap (bare: ${kb(f.bare.rssPerSubscriber)}, ${kb(f.bare.heapPerSubscriber)})`,
      met: f.rssPerSubscriber < 10 * 1024,
    },
  ];
}

function scaleTargets({ small, large, largeNodeDefaults, ratio }: NonNullable<BenchReport["scaleOfState"]>): TargetCheck[] {
  return [
    {
      name: `scale (${large.connections} conn., ${large.tenants} tenants), start-up`,
      target: "< 1000 ms",
      measured: `${large.startupMs} ms to first token`,
      met: large.startupMs < 1000,
    },
    {
      name: "scale, memory",
      target: "< 150 MB",
      measured: `${large.peakRssMb} MB peak RSS as deployed (${large.nodeOptions}; Node's defaults: ${largeNodeDefaults.peakRssMb} MB)`,
      met: large.peakRssMb < 150,
    },
    {
      name: "scale, cached GetToken rate",
      target: `unchanged (≥ 0.9 × 1 connection)`,
      measured: `${large.rps} vs ${small.rps} req/s (${ratio})`,
      met: ratio >= 0.9,
    },
  ];
}

function hostileTargets(h: NonNullable<BenchReport["hostileNeighbour"]>): TargetCheck[] {
  const f = h.flood;
  const refused = f.streams - f.open;
  return [
    {
      name: `hostile neighbour, ${h.callers} callers' cached GetToken p99`,
      target: "< 20 ms",
      measured: `${h.underFlood.p99Ms} ms under flood (alone: ${h.quiet.p99Ms} ms); ${h.underFlood.errors} errors`,
      met: h.underFlood.p99Ms < 20 && h.underFlood.errors === 0,
    },
    {
      name: "hostile neighbour, server peak RSS",
      target: "< 250 MB",
      measured: `${h.peakRssMb} MB (${h.rssBeforeMb} MB before)`,
      met: h.peakRssMb < 250,
    },
    {
      name: "hostile neighbour, flood refused or closed",
      target: "every stream and slow socket",
      measured:
        `streams ${refused.toLocaleString("en")}/${f.streams.toLocaleString("en")}, ` +
        `slow sockets ${f.socketsClosed.toLocaleString("en")}/${f.slowSockets.toLocaleString("en")} (by ${h.observedS} s)`,
      met: f.open === 0 && f.socketsClosed === f.slowSockets,
    },
  ];
}

function hostsTargets(h: NonNullable<BenchReport["severalHosts"]>): TargetCheck[] {
  const rec = h.recovery;
  const boundMs = rec.leaseTtlS * 1000 + rec.upstreamTimeoutMs;
  return [
    {
      name: `several hosts on ${h.store}, upstream refreshes (${h.callers} callers over ${h.hosts} hosts at expiry)`,
      target: "1 per expiry",
      measured: `${h.rounds.map((x) => x.upstreamCalls).join(", ")}; invalid_grant ${h.invalidGrants}`,
      met: h.rounds.every((x) => x.upstreamCalls === 1 && x.versions === 1 && x.errors === 0) && h.invalidGrants === 0,
    },
    {
      name: `several hosts on ${h.store}, every host's watchers after the commit, p99`,
      target: "< 250 ms",
      measured: `${h.deliveryP99Ms.map((ms, i) => `host ${i + 1}: ${ms} ms`).join(", ")} (worst of ${h.rounds.length}${h.store === "SQLite" ? "; other hosts poll every 250 ms" : ""})`,
      met: h.deliveryP99Ms.every((ms) => ms < 250),
    },
    {
      name: `several hosts on ${h.store}, lease holder SIGKILLed at Xero: another host commits`,
      target: `< lease + upstream timeout (${boundMs} ms)`,
      measured: `${rec.recoveryMs} ms; ${rec.upstreamCalls} upstream calls; ${rec.servedByEveryHost ? "every surviving host serves it" : "NOT served by every surviving host"}`,
      met: rec.recoveryMs < boundMs && rec.upstreamCalls === 2 && rec.servedByEveryHost && h.invalidGrants === 0,
    },
  ];
}

function storeTargets(s: NonNullable<BenchReport["cachedByStore"]>): TargetCheck[] {
  return [
    {
      name: `cached GetToken, ${s.label}: broker on PostgreSQL ÷ broker on SQLite req/s (API keys on)`,
      target: "≥ 0.9",
      measured: `${s.ratio} (rounds ${s.ratios.join(", ")}); CPU ratio ${s.cpuRatio} (${s.postgres.serverCpuUsPerRequest} vs ${s.sqlite.serverCpuUsPerRequest} µs per call)`,
      met: s.ratio >= 0.9 && s.postgres.errors === 0 && s.sqlite.errors === 0,
    },
  ];
}

function longPollTargets(l: NonNullable<BenchReport["longPoll"]>): TargetCheck[] {
  return [
    {
      name: `long poll, ${l.waiters.toLocaleString("en")} waiting calls answered after a refresh, p99`,
      target: "< 1000 ms, 1 upstream call",
      measured: `${l.p99Ms} ms (${l.upstreamCalls} upstream call${l.upstreamCalls === 1 ? "" : "s"}, ${l.wrong} wrong or failed; WatchToken streams ${l.streams.p99Ms} ms)`,
      met: l.p99Ms < 1000 && l.upstreamCalls === 1 && l.wrong === 0,
    },
    {
      name: "long poll, server memory per waiting call",
      target: "< 10 KB (a WatchToken stream's budget)",
      measured:
        `${kb(l.rssPerWaiter)} RSS, ${kb(l.heapPerWaiter)} heap; a WatchToken stream in the same run: ${kb(l.streams.rssPerSubscriber)}, ` +
        `${kb(l.streams.heapPerSubscriber)} (heap ratio ${(l.heapPerWaiter / l.streams.heapPerSubscriber).toFixed(2)})`,
      met: l.rssPerWaiter < 10 * 1024 && l.heapPerWaiter < 10 * 1024,
    },
  ];
}

function kb(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB`;
}
