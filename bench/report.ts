import { cpus, loadavg } from "node:os";
import type { CachedRow } from "./scenarios/cached-get-token.js";
import type { FanOutFigures } from "./scenarios/fan-out.js";
import type { StormFigures } from "./scenarios/refresh-storm.js";
import type { ScaleFigures } from "./scenarios/scale-of-state.js";
import type { HostileFigures } from "./scenarios/hostile-neighbour.js";
import type { HostsFigures } from "./scenarios/several-hosts.js";
import type { StoreFigures } from "./scenarios/cached-by-store.js";
import type { LongPollFigures } from "./scenarios/long-poll.js";
import type { XeroProxyFigures } from "./scenarios/xero-proxy.js";

/** A target of issue 7 and whether this run met it. */
export interface TargetCheck {
  name: string;
  target: string;
  measured: string;
  met: boolean;
}

/** Everything one bench run measured (written as JSON). */
export interface BenchReport {
  machine: { cores: number; cpu: string; node: string; platform: string };
  quick: boolean;
  startedAt: string;
  durationS: number;
  /** The machine's 1-minute load average when the run started and ended: other work competes for the cores. */
  loadAverage: { start: number; end: number };
  /** The scenarios run (all but those left out by `--only`). */
  cachedGetToken?: CachedRow[];
  refreshStorm?: StormFigures;
  fanOut?: FanOutFigures;
  scaleOfState?: ScaleFigures;
  hostileNeighbour?: HostileFigures;
  /** Scenario 6 on a SQLite file. */
  severalHosts?: HostsFigures;
  /** Scenario 6 on PostgreSQL, in the same run (left out where PostgreSQL is not installed). */
  severalHostsOnPostgres?: HostsFigures;
  /** Scenario 7: the long poll. */
  longPoll?: LongPollFigures;
  /** Scenario 8: cached GetToken on PostgreSQL against SQLite (left out where PostgreSQL is not installed). */
  cachedByStore?: StoreFigures;
  /** Issue 14: the Xero API proxy against a direct call to the same fake Xero API (only with `--only xero-proxy` for now). */
  xeroProxy?: XeroProxyFigures;
  targets: TargetCheck[];
}

/** The machine the bench ran on. */
export function machine(): BenchReport["machine"] {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
  };
}

/** The 1-minute load average, rounded. */
export function loadAverage(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}
