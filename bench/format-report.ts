import type { BenchReport } from "./report.js";
import { formatTable } from "./table.js";

/** The report as the tables the command prints. */
export function formatReport(r: BenchReport): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(
    `tokenbroker bench${r.quick ? " --quick (smoke run: figures not meaningful)" : ""}: ${m.cores} cores (${m.cpu}), Node ${m.node}, ${m.platform}`,
    `server and load generator in separate processes; ${r.durationS} s; load average ${r.loadAverage.start} at start, ${r.loadAverage.end} at end`,
  );
  if (r.cachedGetToken) out.push(...cachedSection(r.cachedGetToken));
  if (r.refreshStorm) out.push(...stormSection(r.refreshStorm));
  if (r.fanOut) out.push(...fanOutSection(r.fanOut));
  if (r.scaleOfState) out.push(...scaleSection(r.scaleOfState));
  if (r.hostileNeighbour) out.push(...hostileSection(r.hostileNeighbour));
  const hosts = [r.severalHosts, r.severalHostsOnPostgres].filter((h) => h !== undefined);
  if (hosts.length > 0) out.push(...hostsSection(hosts));
  if (r.longPoll) out.push(...longPollSection(r.longPoll));
  if (r.cachedByStore) out.push(...storeSection(r.cachedByStore));
  out.push(
    "",
    "Targets",
    formatTable(
      ["", "target", "measured", "met"],
      r.targets.map((t) => [t.name, t.target, t.measured, t.met ? "yes" : "NO"]),
    ),
  );
  return out.join("\n");
}

function cachedSection(rows: NonNullable<BenchReport["cachedGetToken"]>): string[] {
  const out: string[] = [];
  out.push(
    "",
    "1. Cached GetToken: the broker (API keys and audit on) vs the plain server a user would write per protocol, same token bytes; load: h2load",
    "   (req/s; mean latency ms; server CPU: % of one core, µs per request; ratio: median of the rounds' broker ÷ plain req/s;",
    "   CPU ratio: median of the rounds' plain ÷ broker CPU per request, what two saturated servers' rates would be)",
    formatTable(
      [
        "protocol",
        "in flight",
        "broker req/s",
        "mean",
        "cpu%",
        "µs/req",
        "plain server",
        "req/s",
        "mean",
        "cpu%",
        "µs/req",
        "ratio",
        "CPU ratio",
      ],
      rows.map((x) => [
        x.label,
        x.connections * x.streams,
        x.broker.rps,
        x.broker.meanMs,
        x.broker.serverCpuPct,
        x.broker.serverCpuUsPerRequest,
        x.plainServer,
        x.plain.rps,
        x.plain.meanMs,
        x.plain.serverCpuPct,
        x.plain.serverCpuUsPerRequest,
        x.ratio,
        x.cpuRatio,
      ]),
    ),
  );
  const errors = rows.reduce((n, x) => n + x.broker.errors + x.plain.errors, 0);
  if (errors > 0) out.push(`(${errors} failed requests)`);
  return out;
}

function stormSection(s: NonNullable<BenchReport["refreshStorm"]>): string[] {
  return [
    "",
    `2. Refresh storm: ${s.callers.toLocaleString("en")} callers over ${s.connections} HTTP/2 connections at expiry, fake Xero answering after ${s.upstreamLatencyMs} ms; ` +
      "servers as deployed, then with Node's defaults",
    formatTable(
      [
        "NODE_OPTIONS",
        "round",
        "upstream calls",
        "refresh ms",
        "first served ms",
        "p50 ms",
        "last served ms",
        "token versions",
        "errors",
        "bare: last served ms",
      ],
      [s, s.nodeDefaults].flatMap((series) =>
        series.rounds.map((x, i) => [
          i === 0 ? series.nodeOptions || "(Node's defaults)" : "",
          i + 1,
          x.upstreamCalls,
          x.refreshMs,
          x.firstServedMs,
          x.p50Ms,
          x.lastServedMs,
          x.versions,
          x.errors,
          x.bareLastServedMs,
        ]),
      ),
    ),
  ];
}

function fanOutSection(f: NonNullable<BenchReport["fanOut"]>): string[] {
  return [
    "",
    `3. Fan-out: ${f.subscribers.toLocaleString("en")} WatchToken streams (gRPC, ${f.streamsPerConnection} per HTTP/2 connection, opened 1,000 at a time); ` +
      "a refresh reaches every stream (ms from ReportExpired sent)",
    formatTable(
      ["server", "round", "refresh ms", "delivery p50", "p99", "max", "opened in ms", "memory/subscriber: RSS", "heap"],
      (
        [
          ["broker", f],
          ["bare", f.bare],
        ] as const
      ).flatMap(([name, x]) =>
        x.rounds.map((y, i) => [
          name,
          i + 1,
          y.refreshMs,
          y.p50Ms,
          y.p99Ms,
          y.maxMs,
          i === 0 ? String(x.openMs) : "",
          i === 0 ? kb(x.rssPerSubscriber) : "",
          i === 0 ? kb(x.heapPerSubscriber) : "",
        ]),
      ),
    ),
  ];
}

function scaleSection(sc: NonNullable<BenchReport["scaleOfState"]>): string[] {
  return [
    "",
    "4. Scale of state: `tokenbroker serve` on a seeded database, as deploy/tokenbroker.service runs it, and once with Node's defaults; GetToken over gRPC, 16 callers, every tenant in turn",
    formatTable(
      [
        "connections",
        "tenants",
        "NODE_OPTIONS",
        "listening ms",
        "first token ms",
        "RSS MB idle",
        "after load",
        "peak",
        "req/s",
        "p50 ms",
        "p99 ms",
      ],
      [sc.small, sc.large, sc.largeNodeDefaults].map((x) => [
        x.connections,
        x.tenants,
        x.nodeOptions || "(Node's defaults)",
        x.listeningMs,
        x.startupMs,
        x.idleRssMb,
        x.rssMb,
        x.peakRssMb,
        x.rps,
        x.p50Ms,
        x.p99Ms,
      ]),
    ),
  ];
}

function hostileSection(h: NonNullable<BenchReport["hostileNeighbour"]>): string[] {
  const f = h.flood;
  const resets = Object.entries(f.reset)
    .map(([code, n]) => `${n.toLocaleString("en")} ${RST_NAMES[code] ?? code}`)
    .join(", ");
  return [
    "",
    `5. Hostile neighbour: ${h.callers} callers with a key (gRPC, cached GetToken) while one client without a key, from another address, ` +
      `opens ${f.streams.toLocaleString("en")} HTTP/2 streams with unfinished 64 KB bodies and ${f.slowSockets.toLocaleString("en")} slow sockets`,
    formatTable(
      ["callers", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "server RSS MB"],
      [
        ["alone", h.quiet.rps, h.quiet.p50Ms, h.quiet.p99Ms, h.quiet.maxMs, h.quiet.errors, `${h.rssBeforeMb} before`],
        [
          "under flood",
          h.underFlood.rps,
          h.underFlood.p50Ms,
          h.underFlood.p99Ms,
          h.underFlood.maxMs,
          h.underFlood.errors,
          `${h.peakRssMb} peak`,
        ],
      ],
    ),
    `flood streams: ${f.unauthenticated.toLocaleString("en")} answered UNAUTHENTICATED, ${f.otherStatus} other status, ` +
      `reset: ${resets || "none"}; ${f.open} still open. HTTP/2 connections closed: ${f.connectionsClosed}`,
    `slow sockets: ${f.socketsClosed.toLocaleString("en")} of ${f.slowSockets.toLocaleString("en")} closed by ${h.observedS} s ` +
      `(${f.socketsRefused} within 5 s of connecting: over the per-address cap; the last at ${f.lastSocketClosedS} s)`,
    `server counted: ${h.server.refusedConnections} connections over the per-address cap, ${h.server.headerTimeouts} header timeouts, ` +
      `${h.server.idleTimeouts} idle timeouts, ${h.server.resetStreams.toLocaleString("en")} streams reset for their connection's bytes`,
  ];
}

function hostsSection(stores: ReadonlyArray<NonNullable<BenchReport["severalHosts"]>>): string[] {
  const h = stores[0]!;
  return [
    "",
    `6. Several hosts: ${h.hosts} \`tokenbroker serve\` processes on 127.0.0.1-3 sharing one store (${stores.map((x) => x.store).join(", then ")}); ` +
      `${h.callers.toLocaleString("en")} callers spread over them at expiry (fake Xero answering after ${h.upstreamLatencyMs} ms), ` +
      `${h.watchersPerHost} WatchToken streams on each (delivery: ms after the committing host's refresh log line)`,
    formatTable(
      [
        "store",
        "round",
        "upstream calls",
        "committed by",
        ...Array.from({ length: h.hosts }, (_, i) => `host ${i + 1} p99`),
        "max",
        "last served ms",
        "token versions",
        "errors",
      ],
      stores.flatMap((x) =>
        x.rounds.map((y, i) => [
          i === 0 ? x.store : "",
          i + 1,
          y.upstreamCalls,
          `host ${y.committedBy}`,
          ...y.deliveryP99Ms,
          y.deliveryMaxMs,
          y.lastServedMs,
          y.versions,
          y.errors,
        ]),
      ),
    ),
    ...stores.map(
      ({ store, recovery: rec, invalidGrants }) =>
        `${store}: lease holder SIGKILLed while Xero held its request (lease ${rec.leaseTtlS} s, upstream timeout ${rec.upstreamTimeoutMs} ms): ` +
        `another host committed ${rec.recoveryMs} ms after the kill; ${rec.upstreamCalls} upstream calls for that expiry; invalid_grant: ${invalidGrants}`,
    ),
  ];
}

function storeSection(s: NonNullable<BenchReport["cachedByStore"]>): string[] {
  return [
    "",
    `8. Cached GetToken by store: the broker (API keys and audit on) on PostgreSQL vs on a SQLite file, ${s.label}, load: h2load`,
    "   (columns as in 1; ratio: median of the rounds' PostgreSQL ÷ SQLite req/s)",
    formatTable(
      ["store", "in flight", "req/s", "mean", "cpu%", "µs/req", "errors"],
      (
        [
          ["PostgreSQL", s.postgres],
          ["SQLite", s.sqlite],
        ] as const
      ).map(([store, x]) => [store, s.connections * s.streams, x.rps, x.meanMs, x.serverCpuPct, x.serverCpuUsPerRequest, x.errors]),
    ),
    `ratio ${s.ratio} (rounds ${s.ratios.join(", ")}); CPU ratio ${s.cpuRatio}`,
  ];
}

function longPollSection(l: NonNullable<BenchReport["longPoll"]>): string[] {
  return [
    "",
    `7. Long poll: ${l.waiters.toLocaleString("en")} GetToken calls with newer_than and wait ${l.waitMs / 1000} s (gRPC, ${l.callsPerConnection} per HTTP/2 connection, sent 1,000 at a time), ` +
      "answered by one refresh (ms from ReportExpired sent); the same number of WatchToken streams on the same server before them",
    formatTable(
      ["calls", "sent in ms", "upstream calls", "refresh ms", "answer p50", "p99", "max", "wrong", "memory/call: RSS", "heap"],
      [
        ["long polls", l.sendMs, l.upstreamCalls, l.refreshMs, l.p50Ms, l.p99Ms, l.maxMs, l.wrong, kb(l.rssPerWaiter), kb(l.heapPerWaiter)],
        ["WatchToken streams", "", "", "", "", l.streams.p99Ms, "", "", kb(l.streams.rssPerSubscriber), kb(l.streams.heapPerSubscriber)],
      ],
    ),
  ];
}

/** RST_STREAM codes by number (RFC 9113 §7). */
const RST_NAMES: Record<string, string> = { "7": "REFUSED_STREAM", "8": "CANCEL", "11": "ENHANCE_YOUR_CALM" };

function kb(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB`;
}
