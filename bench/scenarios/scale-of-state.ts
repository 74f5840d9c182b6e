import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchContext } from "../context.js";
import { createGrpcClient } from "../load/clients.js";
import { deployedNodeOptions } from "../deployed-node-options.js";
import { seedStore } from "../seed.js";
import { round, summarize } from "../stats.js";

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
  /** Cached GetToken over gRPC (@grpc/grpc-js), 16 callers, each request for the next tenant in turn. */
  rps: number;
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
  /** large req/s ÷ small req/s: "unchanged" is about 1. */
  ratio: number;
}

const CLI = new URL("../../src/cli/main.js", import.meta.url);

/**
 * Scenario 4: the real `tokenbroker serve` (the compiled CLI) on a database
 * of 1,000 connections and 10,000 tenants, against one of 1 connection:
 * start-up time, memory, and the cached GetToken rate over all tenants.
 */
export async function benchScaleOfState(ctx: BenchContext): Promise<ScaleFigures> {
  const dir = mkdtempSync(join(tmpdir(), "tokenbroker-bench-scale-"));
  try {
    const connections = ctx.quick ? 50 : 1000;
    const tenantsPerConnection = 10;
    const deployed = deployedNodeOptions().join(" ");
    const small = await serveAndMeasure(ctx, join(dir, "small.db"), 1, tenantsPerConnection, deployed);
    const large = await serveAndMeasure(ctx, join(dir, "large.db"), connections, tenantsPerConnection, deployed);
    const largeNodeDefaults = await serveAndMeasure(ctx, join(dir, "large-defaults.db"), connections, tenantsPerConnection, "");
    return { small, large, largeNodeDefaults, ratio: round(large.rps / small.rps, 3) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function serveAndMeasure(
  ctx: BenchContext,
  db: string,
  connections: number,
  tenantsPerConnection: number,
  nodeOptions: string,
): Promise<ServeFigures> {
  const encryptionKey = randomBytes(32);
  const tenantIds = await seedStore({ path: db, connections, tenantsPerConnection, encryptionKey });
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
    const idle = memoryOf(child.pid!);

    const windowMs = ctx.quick ? 300 : 4000;
    // Every tenant once first: a broker in service has seen its tenants, and the rate is that of cached GetToken.
    const options = { concurrency: 16, durationMs: windowMs, warmupMs: ctx.quick ? 100 : 500, selectors, primeAll: true };
    const run = await ctx.load.call("getTokenLoad", url, "grpc-js", options);
    const s = summarize(run.samples);
    const after = memoryOf(child.pid!);
    const figures: ServeFigures = {
      connections,
      tenants: tenantIds.length,
      nodeOptions,
      listeningMs: round(listeningMs, 0),
      startupMs: round(startupMs, 0),
      idleRssMb: round(idle.rssMb, 1),
      rssMb: round(after.rssMb, 1),
      peakRssMb: round(after.peakMb, 1),
      rps: round((run.samples.length / run.durationMs) * 1000, 0),
      p50Ms: round(s.p50, 3),
      p99Ms: round(s.p99, 3),
      errors: run.errors,
    };
    ctx.progress(
      `scale: ${connections} connections / ${tenantIds.length} tenants${nodeOptions ? "" : " (Node's defaults)"}: serving after ${figures.startupMs} ms, ` +
        `${figures.rssMb} MB RSS, ${figures.rps} GetToken/s`,
    );
    return figures;
  } finally {
    await stop(child);
  }
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
