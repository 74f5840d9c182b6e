import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FakeGrant } from "@tokenbroker/fake-xero";
import { importRefreshToken } from "../src/importer.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { captureLog, type LogCapture } from "./helpers/log-capture.js";
import { scrapeMetrics } from "./helpers/prometheus-text.js";
import { rejection } from "./helpers/rejection.js";
import { startWebhookReceiver, type WebhookReceiver } from "./helpers/webhook-receiver.js";

const SECRET = "webhook-secret-for-tests";
const ALARM = "connection.refresh_token_spent_elsewhere";

/**
 * The fake Xero runs without a grace period here: a refresh token spent once is refused at once (with Xero's
 * 30 minutes, the broker's own retry of a token spent elsewhere inside the grace period would succeed instead).
 */
describe("a refresh token spent by another client", () => {
  let f: BrokerFixture;
  let log: LogCapture;
  let hooks: WebhookReceiver;
  let grant: FakeGrant;
  let connectionId: string;

  beforeEach(async () => {
    log = captureLog("info");
    hooks = await startWebhookReceiver(SECRET);
    f = await startBroker({
      noImport: true,
      fake: { graceSeconds: 0 },
      server: { logger: log.logger, notifications: { webhookUrl: hooks.url, webhookSecret: SECRET, delivery: { retryBaseMs: 10 } } },
    });
    grant = f.fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
    connectionId = (await importRefreshToken(f.store, f.identity, grant.refreshToken)).connectionId;
  });
  afterEach(async () => {
    await f.close();
    await hooks.close();
  });

  /** Another client holding a copy of the current refresh token spends it at Xero's token endpoint. */
  async function spendFromSecondClient(): Promise<void> {
    const res = await fetch(`${f.fake.issuer}/connect/token`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${f.fake.clientId}:${f.fake.clientSecret}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: f.fake.getGrant(grant.grantId)!.refreshToken }),
    });
    expect(res.status).toBe(200);
  }

  const byConnection = () => ({ case: "connectionId" as const, value: connectionId });
  const alarms = () => log.records().filter((r) => r["event"] === "refresh_token_spent_elsewhere");

  async function refreshNow(): Promise<ReturnType<typeof rejection>> {
    const client = f.client();
    const current = await client.getToken({ selector: { case: "connectionId", value: connectionId } });
    return rejection(
      client.reportExpired({ selector: { case: "connectionId", value: connectionId }, accessToken: current.token!.accessToken }),
    );
  }

  it("raises the alarm once (log line, webhook, metric), needs re-authorisation, and nothing retries", async () => {
    const stored = await f.store.tokens.getToken(connectionId);
    await spendFromSecondClient();
    const before = f.fake.tokenEndpointCalls;

    const refused = await refreshNow();
    expect(refused.code).toBe(Code.FailedPrecondition);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);

    // Nothing retries: callers, reports, the scheduler, a day later.
    const client = f.client();
    for (let i = 0; i < 20; i++)
      expect((await rejection(client.getToken({ selector: byConnection() }))).code).toBe(Code.FailedPrecondition);
    const report = client.reportExpired({ selector: byConnection(), accessToken: stored!.accessToken });
    expect((await rejection(report)).code).toBe(Code.FailedPrecondition);
    f.clock.advance(24 * 60 * 60_000);
    await f.server.scheduler.tick();
    await f.server.scheduler.tick();
    expect(f.fake.tokenEndpointCalls - before).toBe(1);

    // The alarm: one error line saying what to look for, no token in it.
    expect(alarms()).toHaveLength(1);
    const [line] = alarms();
    expect(line).toMatchObject({ level: 50, connectionId, type: ALARM });
    expect(String(line!["msg"])).toMatch(/another client holding a copy of this refresh token spent it/);
    expect(String(line!["msg"])).toMatch(/old script, a second integration/);
    // One webhook of the alarm, signed (besides the usual needs-re-authorisation one).
    await f.server.notifier.idle();
    const accepted = hooks.accepted();
    expect(accepted.filter((e) => e.type === ALARM)).toHaveLength(1);
    expect(accepted.filter((e) => e.type === "connection.needs_reauthorization")).toHaveLength(1);
    expect(accepted.find((e) => e.type === ALARM)!.message).toMatch(/Look for an old script/);
    // The metric.
    const m = await scrapeMetrics(f.server.url);
    expect(m.value("tokenbroker_refresh_token_spent_elsewhere_total")).toBe(1);
    expect(m.value("tokenbroker_refreshes_total", { outcome: "invalid_grant" })).toBe(1);
    // The connection says why.
    const [summary] = await f.store.connections.listConnections();
    expect(summary).toMatchObject({ state: "needs_reauthorization" });
    expect(summary!.lastError).toMatch(/another client holding a copy/);
    // No secret anywhere it went.
    const everything = log.lines().join("\n") + hooks.received.map((r) => r.body).join("\n");
    for (const secret of [stored!.accessToken, stored!.refreshToken]) expect(everything).not.toContain(secret);
  });

  it("a revoked grant (its access token lists nothing) is a revocation, as before: no alarm", async () => {
    f.fake.revokeGrant(grant.grantId);
    expect((await refreshNow()).code).toBe(Code.FailedPrecondition);
    await f.server.scheduler.tick();
    await f.server.notifier.idle();
    expect(alarms()).toHaveLength(0);
    expect(hooks.accepted().map((e) => e.type)).toEqual(["connection.needs_reauthorization"]);
    expect((await scrapeMetrics(f.server.url)).value("tokenbroker_refresh_token_spent_elsewhere_total")).toBe(0);
    const [summary] = await f.store.connections.listConnections();
    expect(summary!.lastError).not.toMatch(/another client/);
  });

  it("a refresh token this broker may have sent already (an earlier attempt failed) is not blamed on another client", async () => {
    f.fake.failNext(3, { status: 503, error: "temporarily_unavailable" });
    expect((await refreshNow()).code).toBe(Code.Unavailable);
    await spendFromSecondClient();
    f.clock.advance(60_000); // past the cool-down
    expect((await refreshNow()).code).toBe(Code.FailedPrecondition);
    expect(alarms()).toHaveLength(0);
    expect((await scrapeMetrics(f.server.url)).value("tokenbroker_refresh_token_spent_elsewhere_total")).toBe(0);
  });
});
