/**
 * The WatchHub's gate (how a revoked key's WatchToken streams end): one
 * check per owner per publish however many streams it has, before anything
 * is pushed; all of a refused owner's subscriptions end with the gate's
 * reason, on every connection; a periodic check ends them without a publish.
 */
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { TokenBroker } from "../src/broker/token-broker.js";
import { WatchHub, type Subscription } from "../src/broker/watch-hub.js";
import type { TokenRecord } from "../src/token-set.js";
import { startBroker } from "./helpers/broker-fixture.js";

const record = (connectionId: string, version: number): TokenRecord =>
  Object.freeze({
    connectionId,
    version,
    state: "active",
    tenantIds: ["t"],
    accessToken: `at-${version}`,
    refreshToken: "rt",
    tokenType: "Bearer",
    scopes: [],
    obtainedAt: 0,
    expiresAt: 1_800_000,
  }) as unknown as TokenRecord;

/** A gate refusing the owners in `revoked`, counting its checks. */
function gate(everyMs = 60_000) {
  const revoked = new Set<string>();
  const checks: string[] = [];
  const reason = new Error("revoked");
  const refuse = (owner: string) => {
    checks.push(owner);
    return revoked.has(owner) ? reason : undefined;
  };
  return { revoked, checks, reason, everyMs, refuse };
}

/** Listens to a subscription: what it received and how it ended. */
function listen(sub: Subscription) {
  const got: number[] = [];
  const out = { got, ended: false, reason: undefined as unknown };
  sub.listen(
    (r) => got.push(r.version),
    (reason) => {
      out.ended = true;
      out.reason = reason;
    },
  );
  return out;
}

let hub: WatchHub | undefined;
afterEach(() => hub?.closeAll());

describe("WatchHub with a gate", () => {
  it("checks each owner once per publish, not once per subscription; a refused owner's subscriptions end, on every connection, and get nothing", () => {
    const g = gate();
    hub = new WatchHub(g);
    const a = Array.from({ length: 5000 }, () => listen(hub!.subscribe("c1", "key-a")));
    const b = Array.from({ length: 5000 }, () => listen(hub!.subscribe("c1", "key-b")));
    const bElsewhere = listen(hub.subscribe("c2", "key-b"));
    const anonymous = listen(hub.subscribe("c1"));

    hub.publish(record("c1", 1));
    expect(g.checks.sort()).toEqual(["key-a", "key-b"]);
    expect(a.every((s) => s.got.join() === "1") && b.every((s) => s.got.join() === "1") && anonymous.got.join() === "1").toBe(true);

    g.revoked.add("key-b");
    g.checks.length = 0;
    hub.publish(record("c1", 2));
    expect(g.checks.sort()).toEqual(["key-a", "key-b"]);
    expect(a.every((s) => s.got.join() === "1,2" && !s.ended)).toBe(true);
    expect(b.every((s) => s.got.join() === "1" && s.ended && s.reason === g.reason)).toBe(true);
    expect(bElsewhere).toMatchObject({ got: [], ended: true, reason: g.reason });
    expect(anonymous.got).toEqual([1, 2]);
    expect(hub.count("c1")).toBe(5001);
    expect(hub.count("c2")).toBe(0);
  });

  it("the periodic check ends a refused owner's subscriptions without a publish; its timer stops with the last owned subscription", async () => {
    const g = gate(20);
    hub = new WatchHub(g);
    const s = listen(hub.subscribe("c1", "key-a"));
    g.revoked.add("key-a");
    const deadline = Date.now() + 5000;
    while (!s.ended && Date.now() < deadline) await delay(10);
    expect(s).toMatchObject({ ended: true, reason: g.reason });
    expect(hub.size).toBe(0);
    const checks = g.checks.length;
    await delay(100);
    expect(g.checks.length).toBe(checks); // no owner left: no timer
  });

  it("a record queued for a busy TokenBroker.watch reader is checked again when taken", async () => {
    const f = await startBroker();
    const g = gate();
    const broker = new TokenBroker({ store: f.store, identity: f.identity, clock: f.clock, watchGate: g });
    try {
      const watch = broker.watch({ connectionId: f.connectionId }, undefined, "key-a");
      const first = (await watch.next()).value as TokenRecord;
      // Published while the reader is busy: queued for it (the gate let key-a through at the publish).
      broker.hub.publish({ ...first, version: first.version + 1 });
      expect(g.checks).toContain("key-a");
      g.revoked.add("key-a");
      await expect(watch.next()).rejects.toBe(g.reason);
      expect(broker.hub.size).toBe(0);
    } finally {
      await broker.close();
      await f.close();
    }
  });
});
