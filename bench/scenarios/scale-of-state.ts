import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchContext } from "../context.js";
import { createGrpcClient } from "../load/clients.js";
import { deployedNodeOptions } from "../deployed-node-options.js";
import { seedStore } from "../seed.js";
import type { ClosedLoopResult } from "../load/closed-loop.js";
import { median, round, summarize } from "../stats.js";

/** One `tokenbroker serve` process on a seeded database. */
export interface ServeFigures {
  connections: number;
  tenants: number;
  /** The process's NODE_OPTIONS: those of `deploy/tokenbroker.service`, or "" for Node's defaults. */
  nodeOptions: string;
  /** From spawn to the "listening" log line, ms. */
  listeningMs: number;
  /** From spawn to the first GetToken answered, ms (target < 1000). */
  startupMs: number;
  /** Resident memory after start-up, MB. */
  idleRssMb: number;
  /** Resident memory after the load, and the peak, MB (target < 150). */
  rssMb: number;
  peakRssMb: number;
  /** Cached GetToken over gRPC (@grpc/grpc-js), 16 callers, each request for the next tenant in turn: the median window's rate. */
  rps: number;
  /** Latency over all windows, ms. */
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Scenario 4's figures. */
export interface ScaleFigures {
  /** One connection, as deployed. */
  small: ServeFigures;
  /** 1,000 connections, as deployed. */
  large: ServeFigures;
  /** 1,000 connections with Node's default heap settings (no NODE_OPTIONS). */
  largeNodeDefaults: ServeFigures;
  /** large req/s ÷ small req/s, the median of windows taken in turn: "unchanged" is about 1. */
  ratio: number;
}

const CLI = new URL("../../src/cli/main.js", import.meta.url);

/**
 * Scenario 4: the real `tokenbroker serve` (the compiled CLI) on a database
 * of 1,000 connections and 10,000 tenants, against one of 1 connection, both
 * with the V8 flags of `deploy/tokenbroker.service`: start-up time, memory,
 * and the cached GetToken rate over all tenants. The two servers run side by
 * side and take turns under load, five windows each, so that whatever else
 * the machine does falls on both alike; the rate ratio is the median of the
 * five pairs. Then the large database once more with Node's defaults.
 */
export async function benchScaleOfState(ctx: BenchContext): Promise<ScaleFigures> {
  const dir = mkdtempSync(join(tmpdir(), "tokenbroker-bench-scale-"));
  const connections = ctx.quick ? 50 : 1000;
  const rounds = ctx.quick ? 1 : 5;
  const windowMs = ctx.quick ? 300 : 1500;
  const deployed = deployedNodeOptions().join(" ");
  const started: Served[] = [];
  const serve = async (name: string, count: number, nodeOptions: string) => {
    const s = await startServed(join(dir, `${name}.db`), count, nodeOptions);
    started.push(s);
    return s;
  };
  try {
    const small = await serve("small", 1, deployed);
    const large = await serve("large", connections, deployed);
    const ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const s of r % 2 === 0 ? [small, large] : [large, small]) await loadWindow(ctx, s, windowMs);
      ratios.push(rpsOf(large.windows.at(-1)!) / rpsOf(small.windows.at(-1)!));
    }
    const largeNodeDefaults = await serve("large-defaults", connections, "");
    for (let r = 0; r < rounds; r++) await loadWindow(ctx, largeNodeDefaults, windowMs);
    const figures = [small, large, largeNodeDefaults].map((s) => figuresOf(ctx, s));
    return { small: figures[0]!, large: figures[1]!, largeNodeDefaults: figures[2]!, ratio: round(median(ratios), 3) };
  } finally {
    for (const s of started) await stop(s.child);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A running `tokenbroker serve` on a seeded database, and its load windows so far. */
interface Served {
  child: ChildProcess;
  url: string;
  connections: number;
  selectors: Array<{ case: "tenantId"; value: string }>;
  nodeOptions: string;
  listeningMs: number;
  startupMs: number;
  idleRssMb: number;
  windows: ClosedLoopResult[];
}

/** Seeds `db`, starts `tokenbroker serve` on it, and waits for its first token. */
async function startServed(db: string, connections: number, nodeOptions: string): Promise<Served> {
  const encryptionKey = randomBytes(32);
  const tenantIds = await seedStore({ path: db, connections, tenantsPerConnection: 10, encryptionKey });
  const selectors = tenantIds.map((value) => ({ case: "tenantId" as const, value }));
  const started = performance.now();
  // Tokens encrypted at rest, as in production; no API keys (allowed on loopback), so the clients need none.
  const args = [CLI.pathname, "serve", "--db", db, "--listen", "127.0.0.1:0", "--insecure-no-auth"];
  const child = spawn(process.execPath, args, {
    env: {
      PATH: process.env["PATH"] ?? "",
      ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
      TOKENBROKER_CLIENT_ID: "bench-client",
      TOKENBROKER_CLIENT_SECRET: "bench-not-a-secret",
      // Never called: every token set in the database is fresh, and discovery is lazy.
      TOKENBROKER_ISSUER: "http://127.0.0.1:9",
      TOKENBROKER_CONNECTIONS_URL: "http://127.0.0.1:9/connections",
      TOKENBROKER_ALLOW_INSECURE_ISSUER: "1",
      TOKENBROKER_ENCRYPTION_KEY: encryptionKey.toString("base64"),
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  try {
    const url = await listeningUrl(child);
    const listeningMs = performance.now() - started;
    await createGrpcClient(url).getToken({ selector: selectors[0]! });
    const startupMs = performance.now() - started;
    return {
      child,
      url,
      connections,
      selectors,
      nodeOptions,
      listeningMs,
      startupMs,
      idleRssMb: memoryOf(child.pid!).rssMb,
      windows: [],
    };
  } catch (e) {
    await stop(child);
    throw e;
  }
}

/** One window of cached GetToken load on `s`: 16 callers over gRPC (@grpc/grpc-js), every tenant in turn. */
async function loadWindow(ctx: BenchContext, s: Served, windowMs: number): Promise<void> {
  const options = {
    concurrency: 16,
    durationMs: windowMs,
    warmupMs: ctx.quick ? 100 : 300,
    selectors: s.selectors,
    // Every tenant once before the first window: a broker in service has seen its tenants, and the rate is that of cached GetToken.
    primeAll: s.windows.length === 0,
  };
  s.windows.push(await ctx.load.call("getTokenLoad", s.url, "grpc-js", options));
}

function rpsOf(run: ClosedLoopResult): number {
  return (run.samples.length / run.durationMs) * 1000;
}

/** The figures of a server after its windows: memory now and at its peak, the median window's rate. */
function figuresOf(ctx: BenchContext, s: Served): ServeFigures {
  const latency = summarize(s.windows.flatMap((w) => Array.from(w.samples)));
  const memory = memoryOf(s.child.pid!);
  const figures: ServeFigures = {
    connections: s.connections,
    tenants: s.selectors.length,
    nodeOptions: s.nodeOptions,
    listeningMs: round(s.listeningMs, 0),
    startupMs: round(s.startupMs, 0),
    idleRssMb: round(s.idleRssMb, 1),
    rssMb: round(memory.rssMb, 1),
    peakRssMb: round(memory.peakMb, 1),
    rps: round(median(s.windows.map(rpsOf)), 0),
    p50Ms: round(latency.p50, 3),
    p99Ms: round(latency.p99, 3),
    errors: s.windows.reduce((n, w) => n + w.errors, 0),
  };
  ctx.progress(
    `scale: ${s.connections} connections / ${s.selectors.length} tenants${s.nodeOptions ? "" : " (Node's defaults)"}: ` +
      `serving after ${figures.startupMs} ms, ${figures.peakRssMb} MB peak RSS, ${figures.rps} GetToken/s`,
  );
  return figures;
}

/** Waits for the serve command's "listening" log line; returns its URL. */
function listeningUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error("tokenbroker serve did not start within 10 s")), 10_000);
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      for (const line of buffered.split("\n").slice(0, -1)) {
        const entry = parseLine(line);
        if (entry?.["event"] === "listening" && typeof entry["url"] === "string") {
          clearTimeout(timer);
          resolve(entry["url"]);
        }
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tokenbroker serve exited (${code}) before listening: ${buffered.slice(0, 500)}`));
    });
  });
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Resident and peak resident memory of a process, MB (Linux /proc; NaN elsewhere). */
function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
  } catch {
    return { rssMb: NaN, peakMb: NaN };
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
