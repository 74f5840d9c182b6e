import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** How to reach h2load, or why it cannot be run. */
export function h2loadMissing(): string | undefined {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "h2load is missing: the cached GetToken scenario uses it as its load generator. Install it (Debian/Ubuntu: `sudo apt-get install nghttp2-client`; macOS: `brew install nghttp2`), or leave the scenario out (`--only storm,fan-out,scale,hostile`).";
  }
}

/** One request as h2load sends it, over and over. */
export interface H2loadRequest {
  /** Full URL of the method, e.g. `http://127.0.0.1:50051/tokenbroker.v1.TokenService/GetToken`. */
  url: string;
  /** HTTP/1.1 (`--h1`) instead of HTTP/2 with prior knowledge (h2c). */
  h1: boolean;
  headers: Record<string, string>;
  body: Uint8Array;
}

/** Load shape: `connections` (`-c`), each with `streams` requests in flight (`-m`, HTTP/2 only). */
export interface H2loadLoad {
  connections: number;
  streams: number;
  durationS: number;
}

/** What one h2load run measured. */
export interface H2loadResult {
  /** Requests answered per second (h2load's figure). */
  rps: number;
  /** Requests that finished, and those that failed, errored or timed out, or were not answered 2xx. */
  done: number;
  failed: number;
  /** Mean time per request, ms. */
  meanMs: number;
  /** Response bytes per request (DATA frames or HTTP/1.1 bodies, trailers not included): equal on both servers when they send the same answer. */
  dataBytesPerRequest: number;
}

/**
 * Runs h2load (nghttp2's load generator, in C: one thread keeps a 2-core
 * machine's server busy with CPU to spare) with one request repeated for
 * `load.durationS` seconds. It checks HTTP statuses only: gRPC's status is
 * in the trailers, so the caller checks a single call first.
 */
export async function runH2load(request: H2loadRequest, load: H2loadLoad): Promise<H2loadResult> {
  const dir = mkdtempSync(join(tmpdir(), "tokenbroker-h2load-"));
  const bodyFile = join(dir, "body");
  writeFileSync(bodyFile, request.body);
  const args = [
    ...(request.h1 ? ["--h1"] : []),
    "-t",
    "1",
    "-c",
    String(load.connections),
    "-m",
    String(request.h1 ? 1 : load.streams),
    "-D",
    `${Math.round(load.durationS * 1000)}ms`,
    "-d",
    bodyFile,
    ...Object.entries(request.headers).flatMap(([name, value]) => ["-H", `${name}: ${value}`]),
    request.url,
  ];
  try {
    const out = await new Promise<string>((resolve, reject) =>
      execFile("h2load", args, { maxBuffer: 1 << 20 }, (e, stdout, stderr) =>
        e ? reject(new Error(`h2load failed (exit ${String(e.code)}): ${redact(stderr)}`)) : resolve(stdout),
      ),
    );
    return parseH2load(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** h2load echoes its arguments in some errors: no API key in the bench's output. */
function redact(text: string): string {
  return text.replace(/Bearer \S+/g, "Bearer [redacted]");
}

/** Reads h2load's summary. */
export function parseH2load(out: string): H2loadResult {
  const rps = Number(/finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(out)?.[1]);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx/.exec(out);
  const data = /\((\d+)\) data/.exec(out);
  const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out);
  if (!Number.isFinite(rps) || !req || !codes || !mean) throw new Error(`cannot read h2load's output:\n${out}`);
  const done = Number(req[3]);
  const failed = Number(req[5]) + Number(req[6]) + Number(req[7]) + Math.max(0, done - Number(codes[1]));
  return { rps, done, failed, meanMs: toMs(mean[1]!), dataBytesPerRequest: data ? Math.round(Number(data[1]) / Math.max(1, done)) : 0 };
}

function toMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(value);
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "s" ? n * 1000 : n;
}
