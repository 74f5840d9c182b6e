/**
 * `npm run bench`: starts everything on loopback, measures the four scenarios
 * of issue 7, the hostile neighbour of issue 12, the several hosts and the
 * stores of issue 13, and the long poll of issue 16 in one run (or those
 * named by `--only`), prints the tables and writes them as JSON
 * (`bench/results/latest.json`, or `--out PATH`). A full run (every scenario, not `--quick`) also writes
 * docs/performance.json and docs/performance.md. `--quick` is a smoke run with
 * tiny counts. The PostgreSQL rows need Debian's `postgresql-15` (the run
 * starts a server of its own on a temporary directory); without it they are
 * left out, with one line saying so. The server under test and the load
 * generator run in separate processes, so they never share an event loop.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startLoadHost, type BenchContext } from "./context.js";
import { formatReport } from "./format-report.js";
import { writePerformanceDocs } from "./write-performance-page.js";
import { loadAverage, machine, type BenchReport } from "./report.js";
import { checkTargets } from "./targets.js";
import { benchCachedGetToken } from "./scenarios/cached-get-token.js";
import { benchFanOut } from "./scenarios/fan-out.js";
import { benchRefreshStorm } from "./scenarios/refresh-storm.js";
import { benchScaleOfState } from "./scenarios/scale-of-state.js";
import { benchHostileNeighbour } from "./scenarios/hostile-neighbour.js";
import { benchLongPoll } from "./scenarios/long-poll.js";
import { benchSeveralHosts } from "./scenarios/several-hosts.js";
import { benchCachedByStore } from "./scenarios/cached-by-store.js";
import { benchXeroProxy } from "./scenarios/xero-proxy.js";
import { h2loadMissing } from "./load/h2load.js";
import { POSTGRES_PACKAGE, postgresInstalled, startPostgres, type PostgresServer } from "./support/postgres-server.js";

/** The scenarios by the names `--only` takes, in the order they run. */
const SCENARIOS = ["cached", "storm", "fan-out", "scale", "hostile", "hosts", "long-poll", "stores", "xero-proxy"] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const USAGE = `Usage: npm run bench -- [--quick] [--only NAMES] [--out PATH]

  --quick       smoke run: tiny counts and short windows (figures not meaningful)
  --only NAMES  run only these scenarios, comma-separated: ${SCENARIOS.join(", ")}
  --out PATH    where to write the JSON (default bench/results/latest.json)

A full run (no --quick, no --only) also writes docs/performance.json and docs/performance.md.
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const only = values.only === undefined ? [...SCENARIOS] : values.only.split(",").map((n) => n.trim());
  const unknown = only.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario ${unknown.join(", ")}\n${USAGE}`);
    return 2;
  }
  const runs = (name: ScenarioName) => only.includes(name);
  const missing = runs("cached") || runs("stores") ? h2loadMissing() : undefined;
  if (missing) {
    process.stderr.write(`${missing}\n`);
    return 2;
  }
  const out = values.out ?? fileURLToPath(new URL("../../bench/results/latest.json", import.meta.url));
  const started = performance.now();
  const loadAtStart = loadAverage();
  const load = await startLoadHost();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)}s`.padStart(6);
  const ctx: BenchContext = { quick: values.quick, load, progress: (line) => process.stderr.write(`${elapsed()}  ${line}\n`) };
  // One PostgreSQL server for the run, started when a scenario first needs it; a new database for each use.
  const withPostgres = (runs("hosts") || runs("stores")) && postgresInstalled();
  if ((runs("hosts") || runs("stores")) && !withPostgres) {
    process.stderr.write(`${POSTGRES_PACKAGE.what} is missing (${POSTGRES_PACKAGE.install}): the PostgreSQL rows are left out\n`);
  }
  let postgres: Promise<PostgresServer> | undefined;
  const createDatabase = async () => {
    postgres ??= startPostgres();
    return (await postgres).createDatabase();
  };
  try {
    const figures = {
      machine: machine(),
      quick: values.quick,
      startedAt: new Date().toISOString(),
      durationS: 0,
      loadAverage: { start: loadAtStart, end: 0 },
      ...(runs("cached") ? { cachedGetToken: await benchCachedGetToken(ctx) } : {}),
      ...(runs("storm") ? { refreshStorm: await benchRefreshStorm(ctx) } : {}),
      ...(runs("fan-out") ? { fanOut: await benchFanOut(ctx) } : {}),
      ...(runs("scale") ? { scaleOfState: await benchScaleOfState(ctx) } : {}),
      ...(runs("hostile") ? { hostileNeighbour: await benchHostileNeighbour(ctx) } : {}),
      ...(runs("hosts") ? { severalHosts: await benchSeveralHosts(ctx) } : {}),
      ...(runs("hosts") && withPostgres
        ? { severalHostsOnPostgres: await benchSeveralHosts(ctx, { name: "PostgreSQL", location: createDatabase }) }
        : {}),
      ...(runs("long-poll") ? { longPoll: await benchLongPoll(ctx) } : {}),
      ...(runs("stores") && withPostgres ? { cachedByStore: await benchCachedByStore(ctx, createDatabase) } : {}),
      ...(runs("xero-proxy") ? { xeroProxy: await benchXeroProxy(ctx) } : {}),
    };
    figures.durationS = Math.round((performance.now() - started) / 1000);
    figures.loadAverage.end = loadAverage();
    const report: BenchReport = { ...figures, targets: checkTargets(figures) };
    process.stdout.write(`${formatReport(report)}\n`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(`written to ${out}\n`);
    if (!values.quick && values.only === undefined) {
      const docs = writePerformanceDocs(report);
      process.stderr.write(`written to ${docs.join(" and ")}\n`);
    }
    return 0;
  } finally {
    await load.stop();
    (await postgres?.catch(() => undefined))?.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
