/**
 * The test-only refresh pauses (TOKENBROKER_TEST_PAUSE_*) are not reachable from the shipped build: a real
 * `tokenbroker serve` with them set refreshes at once and says nothing of them. Only the test entry
 * (test/helpers/serve-with-fault-hooks.mjs, which the package does not ship) pauses.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startFakeXero, type FakeXero } from "@tokenbroker/fake-xero";
import { tempDir } from "./helpers/broker-fixture.js";
import { cliImport, fakeEnv, killAllServe, startServe, type ServeProcess } from "./helpers/serve-process.js";

const PAUSE_MS = 60_000;
const ROOT = join(import.meta.dirname, "..");

let fake: FakeXero;
let dir: ReturnType<typeof tempDir>;
beforeAll(async () => {
  fake = await startFakeXero();
  dir = tempDir();
});
afterEach(killAllServe);
afterAll(async () => {
  await fake.close();
  dir.cleanup();
});

/** Forces one refresh through the broker's Connect JSON API (ReportExpired of the current token); resolves with how long it took. */
async function forceRefresh(broker: ServeProcess, connectionId: string): Promise<{ ms: number; before: number; after: number }> {
  const call = async (method: string, body: unknown) => {
    const res = await fetch(`${broker.url}/tokenbroker.v1.TokenService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { token: { accessToken: string; version: string } };
  };
  const { token } = await call("GetToken", { connectionId });
  const started = performance.now();
  const reported = await call("ReportExpired", { connectionId, accessToken: token.accessToken });
  return { ms: performance.now() - started, before: Number(token.version), after: Number(reported.token.version) };
}

describe("TOKENBROKER_TEST_PAUSE_* on the shipped tokenbroker serve", () => {
  it("change nothing: no pause, no warning", async () => {
    const db = join(dir.path, "shipped.db");
    const env = fakeEnv(fake, {
      TOKENBROKER_TEST_PAUSE_AFTER_LEASE_MS: String(PAUSE_MS),
      TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS: String(PAUSE_MS),
    });
    const connectionId = await cliImport(env, db, fake.addGrant({ tenants: [{ tenantName: "Org A" }] }).refreshToken);
    const broker = await startServe({ env, db });
    const { ms, before, after } = await forceRefresh(broker, connectionId);
    expect(after).toBe(before + 1); // refreshed
    expect(ms).toBeLessThan(PAUSE_MS / 4); // a pause would hold the refresh for a whole minute
    await broker.kill("SIGTERM");
    expect(broker.stderr()).not.toMatch(/test_hooks|test_pause|TEST-ONLY/);
  });

  it("no source of a published package reads TOKENBROKER_TEST_* (the server ships dist/ compiled from src/ and gen/, the client packages/client/src; test/ does not ship)", () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const name of readdirSync(d)) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.[cm]?[jt]s$/.test(p)) files.push(p);
      }
    };
    for (const d of ["src", "gen", "packages/client/src"]) walk(join(ROOT, d));
    expect(files.length).toBeGreaterThan(50);
    expect(files.filter((p) => readFileSync(p, "utf8").includes("TOKENBROKER_TEST_"))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { files: string[] };
    expect(pkg.files.some((f) => f.startsWith("test"))).toBe(false);
  });

  it("the test entry (test/helpers/serve-with-fault-hooks.mjs) still pauses where the crash-safety test kills", async () => {
    const db = join(dir.path, "hooked.db");
    const env = fakeEnv(fake, { TOKENBROKER_TEST_PAUSE_AFTER_LEASE_MS: "300" });
    const connectionId = await cliImport(env, db, fake.addGrant({ tenants: [{ tenantName: "Org B" }] }).refreshToken);
    const broker = await startServe({ env, db, faultHooks: true });
    const { ms } = await forceRefresh(broker, connectionId);
    expect(ms).toBeGreaterThanOrEqual(250);
    await broker.waitForLog((l) => l["event"] === "test_pause" && l["point"] === "after_lease" && l["connectionId"] === connectionId);
  });
});
