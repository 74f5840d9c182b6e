import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import type { FakeGrant } from "@tokenbroker/fake-xero";
import { importRefreshToken } from "../src/importer.js";
import { ConnectionMonitor } from "../src/notify/connection-monitor.js";
import type { NotifierOptions } from "../src/notify/notifier.js";
import { signWebhook, verifyWebhookSignature } from "../src/notify/webhook-signature.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { captureLog, type LogCapture } from "./helpers/log-capture.js";
import { startWebhookReceiver, type WebhookReceiver } from "./helpers/webhook-receiver.js";

const DAY = 24 * 60 * 60_000;
const SECRET = `whsec_${randomBytes(16).toString("hex")}`;

describe("failure notifications", () => {
  let f: BrokerFixture | undefined;
  let receiver: WebhookReceiver | undefined;
  let log: LogCapture;

  afterEach(async () => {
    await f?.close();
    await receiver?.close();
    f = undefined;
    receiver = undefined;
  });

  /** A receiver that knows SECRET, and a broker that signs with `secret`; keep-alive off, so refresh tokens age. */
  async function start(options: { secret?: string; noImport?: boolean; notifications?: Partial<NotifierOptions> } = {}) {
    receiver = await startWebhookReceiver(SECRET);
    log = captureLog();
    f = await startBroker({
      ...(options.noImport ? { noImport: true } : {}),
      server: {
        logger: log.logger,
        scheduler: { keepAliveAfterMs: 365 * DAY },
        notifications: {
          webhookUrl: receiver.url,
          webhookSecret: options.secret ?? SECRET,
          delivery: { retryBaseMs: 20, timeoutMs: 2000 },
          ...options.notifications,
        },
      },
    });
    return { f, receiver };
  }

  /** One scheduler pass, then every delivery it caused has ended. */
  async function pass(): Promise<void> {
    await f!.server.scheduler.tick();
    await f!.server.notifier.idle();
  }

  /** The warnings logged for notifications, by event type. */
  const warnings = () =>
    log
      .records()
      .filter((r) => r["event"] === "notification" && r["level"] === 40)
      .map((r) => r["type"]);

  /** Every secret the test knows of that must never reach a log line or a webhook body. */
  async function secrets(grants: FakeGrant[], connectionId: string): Promise<string[]> {
    const stored = await f!.store.tokens.getToken(connectionId);
    return [
      SECRET,
      f!.fake.clientSecret,
      ...grants.map((g) => g.refreshToken),
      ...grants.map((g) => f!.fake.getGrant(g.grantId)?.refreshToken ?? ""),
      stored?.accessToken ?? "",
      stored?.refreshToken ?? "",
    ].filter((s) => s.length > 8);
  }

  it("a revoked grant sends one signed needs_reauthorization event; a re-import sends one recovered event", async () => {
    const { f, receiver } = await start({ noImport: true });
    const grant = f.fake.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    const imported = await importRefreshToken(f.store, f.identity, grant.refreshToken);
    const connectionId = imported.connectionId;
    await pass();
    expect(receiver.received).toEqual([]); // a healthy connection: nothing to say

    f.fake.revokeGrant(grant.grantId);
    const stored = await f.store.tokens.getToken(connectionId);
    f.clock.set(stored!.expiresAt + 1000);
    const err = await f
      .client()
      .getToken({ selector: { case: "connectionId", value: connectionId } })
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    expect(err?.code).toBe(Code.FailedPrecondition);
    await pass();
    await pass(); // once per transition, not once per pass

    expect(receiver.received).toHaveLength(1);
    const [delivery] = receiver.received;
    expect(delivery!.verified).toBe(true);
    expect(delivery!.status).toBe(204);
    expect(delivery!.signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    const t = Number(/^t=(\d+)/.exec(delivery!.signature!)![1]);
    expect(Math.abs(t - Date.now() / 1000)).toBeLessThan(60);
    // The same body does not verify with another secret, nor a changed body with this one.
    expect(verifyWebhookSignature(delivery!.signature, delivery!.body, "another-secret")).toBe(false);
    expect(verifyWebhookSignature(delivery!.signature, delivery!.body.replace("needs", "nееds"), SECRET)).toBe(false);

    const event = delivery!.json;
    expect(event.type).toBe("connection.needs_reauthorization");
    expect(event.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(event.connection["id"]).toBe(connectionId);
    expect(event.connection["state"]).toBe("needs_reauthorization");
    expect((event.connection["tenants"] as Array<{ tenantName: string }>).map((x) => x.tenantName).sort()).toEqual(["Org A", "Org B"]);
    expect(event.connection["lastError"]).toMatch(/invalid_grant/);
    expect(event["message"]).toMatch(/tokenbroker import/);

    // The same user consents again and the connection is re-imported.
    const regrant = f.fake.addGrant({
      userId: grant.userId,
      tenants: imported.tenants.map((x) => ({ tenantId: x.tenantId, ...(x.tenantName ? { tenantName: x.tenantName } : {}) })),
    });
    expect((await importRefreshToken(f.store, f.identity, regrant.refreshToken)).connectionId).toBe(connectionId);
    await pass();
    await pass();

    expect(receiver.accepted().map((e) => e.type)).toEqual(["connection.needs_reauthorization", "connection.recovered"]);
    expect(receiver.received.every((r) => r.verified)).toBe(true);
    const recovered = receiver.accepted()[1]!;
    expect(recovered.connection["state"]).toBe("active");
    expect(recovered.connection["id"]).toBe(connectionId);

    // A warning in the log for each event; no secret in any log line or webhook body; the URL is not logged.
    expect(warnings()).toEqual(["connection.needs_reauthorization", "connection.recovered"]);
    const all = log.lines().join("\n") + receiver.received.map((r) => r.body + r.signature).join("\n");
    for (const secret of await secrets([grant, regrant], connectionId)) expect(all).not.toContain(secret);
    expect(log.lines().join("\n")).not.toContain(receiver.url.pathname);
  });

  it("a refresh token 54 days old and never refreshed is announced once; a refresh re-arms the warning", async () => {
    const { f, receiver } = await start();
    const callsBefore = f.fake.tokenEndpointCalls;
    const issuedAt = (await f.store.tokens.getToken(f.connectionId))!.refreshTokenIssuedAt;
    await pass();
    f.clock.set(issuedAt + 52 * DAY);
    await pass();
    expect(receiver.received).toEqual([]); // 8 days left: more than the 7-day warning

    f.clock.set(issuedAt + 54 * DAY);
    await pass();
    f.clock.advance(DAY / 2);
    await pass();
    expect(f.fake.tokenEndpointCalls).toBe(callsBefore); // keep-alive is off: nothing refreshed it
    expect(receiver.accepted().map((e) => e.type)).toEqual(["connection.refresh_token_expiring"]);
    const event = receiver.accepted()[0]!;
    expect(event.connection["id"]).toBe(f.connectionId);
    expect(Date.parse(event.connection["refreshTokenExpiresAt"] as string)).toBe(issuedAt + 60 * DAY);
    expect(event["message"]).toMatch(/dies in 6\.0 days/);
    expect(warnings()).toEqual(["connection.refresh_token_expiring"]);

    // A refresh (a channel asks for the expired token) gives the connection a new refresh token: no more warnings...
    await f.client().getToken({ selector: { case: "connectionId", value: f.connectionId } });
    await pass();
    expect(receiver.accepted()).toHaveLength(1);
    // ...until that one is 54 days old in turn.
    f.clock.advance(54 * DAY);
    await pass();
    expect(receiver.accepted().map((e) => e.type)).toEqual(["connection.refresh_token_expiring", "connection.refresh_token_expiring"]);
    expect(warnings()).toHaveLength(2);
    const all = log.lines().join("\n") + receiver.received.map((r) => r.body).join("\n");
    for (const secret of await secrets([], f.connectionId)) expect(all).not.toContain(secret);
  });

  it("a receiver that answers 503 gets the same event again, with backoff, until it accepts it", async () => {
    const { f, receiver } = await start();
    receiver.failNext(2, 503);
    const issuedAt = (await f.store.tokens.getToken(f.connectionId))!.refreshTokenIssuedAt;
    f.clock.set(issuedAt + 55 * DAY);
    const started = Date.now();
    await pass();
    expect(receiver.received.map((r) => r.status)).toEqual([503, 503, 204]);
    expect(new Set(receiver.received.map((r) => r.json.id)).size).toBe(1);
    expect(receiver.received.every((r) => r.verified)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(20); // backoff: ≥ 10 + 20 ms of (jittered) waits
    const delivered = log.records().find((r) => r["msg"] === "webhook delivered");
    expect(delivered?.["attempts"]).toBe(3);
    expect(warnings()).toEqual(["connection.refresh_token_expiring"]);
  });

  it("a delivery signed with the wrong secret is refused by the receiver, not retried, and logged as a warning", async () => {
    const { f, receiver } = await start({ secret: "not-the-receivers-secret" });
    f.clock.set((await f.store.tokens.getToken(f.connectionId))!.refreshTokenIssuedAt + 55 * DAY);
    await pass();
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0]!.verified).toBe(false);
    expect(receiver.received[0]!.status).toBe(401);
    expect(receiver.accepted()).toEqual([]);
    const failed = log.records().find((r) => r["event"] === "webhook" && r["level"] === 40);
    expect(failed?.["status"]).toBe(401);
    expect(failed?.["delivered"]).toBe(false);
    expect(failed?.["msg"]).toMatch(/webhook delivery failed after 1 attempt/);
    expect(log.lines().join("\n")).not.toContain("not-the-receivers-secret");
  });

  it("an unreachable receiver: a few attempts, then a warning naming the reason", async () => {
    const { f, receiver } = await start({ notifications: { delivery: { attempts: 3, retryBaseMs: 10, timeoutMs: 1000 } } });
    await receiver.close(); // nothing listens on the URL any more
    f.clock.set((await f.store.tokens.getToken(f.connectionId))!.refreshTokenIssuedAt + 55 * DAY);
    await pass();
    const failed = log.records().find((r) => r["event"] === "webhook" && r["level"] === 40);
    expect(failed?.["attempts"]).toBe(3);
    expect(failed?.["error"]).toMatch(/ECONNREFUSED/);
    expect(warnings()).toEqual(["connection.refresh_token_expiring"]);
  });
});

describe("webhook signature", () => {
  it("verifies its own signature, refuses another secret, a changed body, an old timestamp and garbage", () => {
    const body = JSON.stringify({ type: "connection.recovered" });
    const now = 1_800_000_000;
    const header = signWebhook(body, SECRET, now);
    expect(verifyWebhookSignature(header, body, SECRET, { nowSeconds: now + 10 })).toBe(true);
    expect(verifyWebhookSignature(header, body, `${SECRET}x`, { nowSeconds: now })).toBe(false);
    expect(verifyWebhookSignature(header, `${body} `, SECRET, { nowSeconds: now })).toBe(false);
    expect(verifyWebhookSignature(header, body, SECRET, { nowSeconds: now + 301 })).toBe(false);
    for (const bad of [undefined, "", "t=abc,v1=00", `t=${now}`, `v1=${header.split("v1=")[1]}`]) {
      expect(verifyWebhookSignature(bad, body, SECRET, { nowSeconds: now })).toBe(false);
    }
  });
});

describe("ConnectionMonitor", () => {
  const state = (version: number, s: "active" | "needs_reauthorization", issuedAt = 0) => ({
    connectionId: "c1",
    version,
    state: s,
    expiresAt: 0,
    obtainedAt: 0,
    refreshTokenIssuedAt: issuedAt,
  });

  it("reports each transition once and ignores a snapshot older than one already seen", () => {
    const m = new ConnectionMonitor(7 * DAY);
    expect(m.observe([state(1, "active")], DAY)).toEqual([]);
    expect(m.observe([state(1, "needs_reauthorization")], DAY).map((t) => t.type)).toEqual(["connection.needs_reauthorization"]);
    expect(m.observe([state(1, "active")], DAY)).toEqual([]); // stale: needs re-authorisation came after it
    expect(m.observe([state(1, "needs_reauthorization")], DAY)).toEqual([]);
    expect(m.observe([state(2, "active", DAY)], DAY).map((t) => t.type)).toEqual(["connection.recovered"]);
    expect(m.observe([state(2, "active", DAY)], 2 * DAY)).toEqual([]);
  });

  it("a broker that starts with a connection already in trouble says so once", () => {
    const m = new ConnectionMonitor(7 * DAY);
    expect(m.observe([state(3, "needs_reauthorization")], 0).map((t) => t.type)).toEqual(["connection.needs_reauthorization"]);
    const n = new ConnectionMonitor(7 * DAY);
    expect(n.observe([state(3, "active", 0)], 58 * DAY).map((t) => t.type)).toEqual(["connection.refresh_token_expiring"]);
    expect(n.observe([state(3, "active", 0)], 59 * DAY)).toEqual([]);
  });
});
