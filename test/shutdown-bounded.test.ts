/**
 * Shutdown is bounded: a real `tokenbroker serve` gets SIGTERM while the fake Xero's token endpoint hangs (or
 * answers too late) in the middle of a refresh. The process exits within the shutdown grace whatever the
 * identity server does, sends nothing upstream after the signal, answers the waiting caller UNAVAILABLE, and the
 * next start on the same database finishes the refresh through Xero's grace period, as after a crash.
 */
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import Database from "better-sqlite3";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { describe, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startFakeXero, type FakeXero } from "@tokenbroker/fake-xero";
import { tempDir } from "./helpers/broker-fixture.js";
import { cliImport, fakeEnv, startServe, until, type ServeProcess } from "./helpers/serve-process.js";

/** What the test allows beyond the grace: the process's own exit (closing the store, Node's teardown) on a loaded machine. */
const EXIT_MARGIN_MS = 1500;

interface Scenario {
  /** The fake Xero, with one grant imported into `db` and its access token already expired. */
  fake: FakeXero;
  db: string;
  env: NodeJS.ProcessEnv;
  connectionId: string;
  grantId: string;
  /** The stored token set's version. */
  version(): number;
  processes: ServeProcess[];
}

/** A fake Xero and a database holding one connection whose access token has expired: its next GetToken refreshes. */
async function scenario(
  onTestFinished: (fn: () => Promise<void>) => void,
  options: { graceRetry?: "same" | "new"; env?: Record<string, string> } = {},
): Promise<Scenario> {
  const fake = await startFakeXero({ graceRetry: options.graceRetry ?? "same" });
  const dir = tempDir();
  const processes: ServeProcess[] = [];
  let readOnly: Database.Database | undefined;
  onTestFinished(async () => {
    await Promise.all(processes.map((p) => p.kill("SIGKILL")));
    readOnly?.close();
    await fake.close();
    dir.cleanup();
  });
  const db = join(dir.path, "tokenbroker.db");
  const env = fakeEnv(fake, options.env);
  const grant = fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
  // The imported access token lives 3 s (long enough for the import to list the tenants with it); once it has
  // expired, GetToken has to refresh it.
  fake.setAccessTokenLifetime(3);
  const connectionId = await cliImport(env, db, grant.refreshToken);
  fake.setAccessTokenLifetime(1800);
  readOnly = new Database(db, { readonly: true });
  const row = readOnly.prepare<[string], { version: number; expiresAt: number }>(
    "SELECT version, expires_at AS expiresAt FROM token_sets WHERE connection_id = ?",
  );
  const expiresAt = row.get(connectionId)!.expiresAt;
  await until(() => Date.now() > expiresAt + 50, 5000, "the imported access token to expire", 20);
  return { fake, db, env, connectionId, grantId: grant.grantId, version: () => row.get(connectionId)!.version, processes };
}

async function serve(s: Scenario, args: string[]): Promise<ServeProcess> {
  const p = await startServe({ env: s.env, db: s.db, args });
  s.processes.push(p);
  return p;
}

function client(p: ServeProcess) {
  return createClient(TokenService, createConnectTransport({ baseUrl: p.url, httpVersion: "1.1" }));
}

/** The error a call ended with, or "ok". */
async function outcome(call: Promise<unknown>): Promise<ConnectError | "ok"> {
  try {
    await call;
    return "ok";
  } catch (e) {
    return ConnectError.from(e);
  }
}

/**
 * Starts a refresh through GetToken, waits until its request hangs at the fake, sends SIGTERM and measures how
 * long the process takes to exit. Waits at most `waitMs`; a process still running then is SIGKILLed and reported.
 */
async function sigtermWhileRefreshing(s: Scenario, p: ServeProcess, waitMs: number) {
  const callsBefore = s.fake.tokenEndpointCalls;
  const waiting = outcome(client(p).getToken({ selector: { case: "connectionId", value: s.connectionId } }, { timeoutMs: 120_000 }));
  await until(() => s.fake.tokenEndpointCalls > callsBefore, 5000, "the refresh to reach the fake", 5);
  await delay(100); // the request is in flight, unanswered
  const callsAtSignal = s.fake.tokenEndpointCalls;
  const signalled = performance.now();
  p.child.kill("SIGTERM");
  const exit = await Promise.race([p.exited, delay(waitMs).then(() => "still running" as const)]);
  const exitMs = performance.now() - signalled;
  if (exit === "still running") await p.kill("SIGKILL");
  // Anything sent after the signal would have arrived by now.
  await delay(200);
  return { exit, exitMs, attemptsAfterSignal: s.fake.tokenEndpointCalls - callsAtSignal, waiting: await waiting };
}

// The four scenarios run at the same time, each with its own fake Xero, database and process: each mostly waits
// (for a token to expire, for the grace to run out), so the file takes about as long as the slowest (the default
// 10 s grace) instead of the sum.
describe.concurrent("SIGTERM while Xero's token endpoint hangs", () => {
  it("with TOKENBROKER_SHUTDOWN_GRACE_SECONDS=2: exits 0 within the grace, sends nothing upstream after the signal, answers the waiting caller UNAVAILABLE; the next start recovers the connection", {
    timeout: 60_000,
  }, async ({ expect, onTestFinished }) => {
    const graceMs = 2000;
    // The upstream timeout (5 s) is longer than the grace: only the shutdown deadline can end the hanging request.
    const s = await scenario(onTestFinished, {
      env: { TOKENBROKER_UPSTREAM_TIMEOUT_MS: "5000", TOKENBROKER_SHUTDOWN_GRACE_SECONDS: "2" },
    });
    const p = await serve(s, []);
    s.fake.setLatency(600_000); // hangs: never answers while this test runs
    const r = await sigtermWhileRefreshing(s, p, 40_000);
    console.info(
      `grace 2 s, upstream timeout 5 s: exit ${Math.round(r.exitMs)} ms after SIGTERM, ${r.attemptsAfterSignal} upstream attempts after it`,
    );

    expect(r.exit, `still running ${Math.round(r.exitMs)} ms after SIGTERM`).toEqual({ code: 0, signal: null });
    expect(r.exitMs).toBeLessThan(graceMs + EXIT_MARGIN_MS);
    expect(r.attemptsAfterSignal).toBe(0);
    expect(r.waiting).not.toBe("ok");
    expect([(r.waiting as ConnectError).code, (r.waiting as ConnectError).rawMessage]).toEqual([
      Code.Unavailable,
      expect.stringMatching(/shutting down/),
    ]);
    // The log says what happened to the refresh; then the process stopped.
    const refreshLog = p.logs().find((l) => l["event"] === "refresh" && l["connectionId"] === s.connectionId);
    expect(refreshLog).toMatchObject({ outcome: "transient_error", attempts: 1, error: "abandoned at the shutdown deadline" });
    expect(p.logs().some((l) => l["event"] === "stopped")).toBe(true);
    expect(s.version(), "nothing was committed").toBe(1);

    // The next start on the same database, Xero healthy again: the refresh is finished, the connection serves.
    s.fake.setLatency(0);
    const refreshesBefore = s.fake.refreshes;
    const next = await serve(s, []);
    const { token } = await client(next).getToken({ selector: { case: "connectionId", value: s.connectionId } });
    expect(token?.version).toBe(2n);
    expect(s.fake.refreshes - refreshesBefore).toBe(1);
    expect(s.fake.invalidGrants).toBe(0);
    expect(s.fake.getGrant(s.grantId)?.refreshToken).not.toBeUndefined();
    await next.kill("SIGTERM");
    expect(await next.exited).toEqual({ code: 0, signal: null });
  });

  it.for([{ graceRetry: "same" as const }, { graceRetry: "new" as const }])(
    "with --shutdown-grace 1, an answer that comes after the process exited spends the refresh token; the next start refreshes with it inside Xero's grace period (grace retry returns the $graceRetry pair)",
    { timeout: 60_000 },
    async ({ graceRetry }, { expect, onTestFinished }) => {
      const s = await scenario(onTestFinished, { graceRetry, env: { TOKENBROKER_UPSTREAM_TIMEOUT_MS: "5000" } });
      const p = await serve(s, ["--shutdown-grace", "1"]);
      s.fake.setLatency(2500); // answers 2.5 s after the request arrived: after the 1 s grace
      const refreshesBefore = s.fake.refreshes;
      const r = await sigtermWhileRefreshing(s, p, 40_000);
      expect(r.exit, `still running ${Math.round(r.exitMs)} ms after SIGTERM`).toEqual({ code: 0, signal: null });
      expect(r.exitMs).toBeLessThan(1000 + EXIT_MARGIN_MS);
      expect(r.attemptsAfterSignal).toBe(0);
      // The fake answers into the closed connection: the stored refresh token is now spent.
      await until(() => s.fake.refreshes > refreshesBefore, 5000, "the fake to answer", 10);
      expect(s.version()).toBe(1);

      s.fake.setLatency(0);
      const next = await serve(s, ["--shutdown-grace", "1"]);
      const { token } = await client(next).getToken({ selector: { case: "connectionId", value: s.connectionId } });
      expect(token?.version).toBe(2n);
      // The same refresh token, spent by the answer nobody read, is accepted again within the grace period.
      expect(s.fake.refreshes - refreshesBefore).toBe(2);
      expect(s.fake.graceViolations).toBe(0);
      expect(s.fake.invalidGrants).toBe(0);
      // And what the next start stored is the grant's live refresh token: one more refresh works.
      const again = await client(next).reportExpired({
        selector: { case: "connectionId", value: s.connectionId },
        accessToken: token!.accessToken,
      });
      expect(again.refreshed).toBe(true);
      expect(s.fake.invalidGrants).toBe(0);
    },
  );

  it("with the default grace (10 s) and an upstream timeout longer than it: exits 0 within 10 s of SIGTERM, with no attempt after the signal", {
    timeout: 90_000,
  }, async ({ expect, onTestFinished }) => {
    const s = await scenario(onTestFinished, { env: { TOKENBROKER_UPSTREAM_TIMEOUT_MS: "20000" } });
    const p = await serve(s, []);
    s.fake.setLatency(600_000);
    const r = await sigtermWhileRefreshing(s, p, 70_000);
    console.info(
      `default grace, upstream timeout 20 s: exit ${Math.round(r.exitMs)} ms after SIGTERM, ${r.attemptsAfterSignal} upstream attempts after it`,
    );
    expect(r.exit, `still running ${Math.round(r.exitMs)} ms after SIGTERM`).toEqual({ code: 0, signal: null });
    expect(r.exitMs).toBeLessThan(10_000 + EXIT_MARGIN_MS);
    expect(r.attemptsAfterSignal).toBe(0);
    expect((r.waiting as ConnectError).code).toBe(Code.Unavailable);
  });
});
