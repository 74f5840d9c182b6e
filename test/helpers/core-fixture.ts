/**
 * The token logic (TokenBroker, its Refresher, a Scheduler) on an in-memory store and identity server, on one
 * fake time: a {@link ManualClock} for expiry decisions and vitest's fake timers for waits (retry back-off,
 * lease polls, the scheduler's interval), moved together by {@link CoreFixture.advance}. Call
 * `vi.useFakeTimers()` before {@link startCore}.
 */
import { vi } from "vitest";
import type { RefreshEvent, RefreshWaitEvent } from "../../src/broker/refresh-events.js";
import { Scheduler, type SchedulerOptions } from "../../src/broker/scheduler.js";
import { TokenBroker, type TokenBrokerOptions } from "../../src/broker/token-broker.js";
import { ManualClock } from "../../src/clock.js";
import { MemoryIdentityServer, type MemoryIdentityOptions } from "./memory-identity-server.js";
import { MemoryTokenStore } from "./memory-token-store.js";

/** 1 January 2026, 00:00 UTC: every unit test starts at the same instant. */
export const START = Date.UTC(2026, 0, 1);

/** The tenant of the connection {@link startCore} saves. */
export const TENANT = "tenant-1";

/** Options for {@link startCore}. */
export interface CoreOptions {
  identity?: MemoryIdentityOptions;
  broker?: Partial<TokenBrokerOptions>;
}

/** One broker process; {@link CoreFixture.process} makes more on the same store. */
export interface BrokerProcess {
  broker: TokenBroker;
  /** Every refresh event, in order. */
  events: RefreshEvent[];
  /** Every wait event, in order. */
  waits: RefreshWaitEvent[];
  /** A scheduler on this broker (not started). */
  scheduler(options?: SchedulerOptions): Scheduler;
}

/** See {@link startCore}. */
export interface CoreFixture extends BrokerProcess {
  clock: ManualClock;
  store: MemoryTokenStore;
  identity: MemoryIdentityServer;
  /** The connection saved at start (version 1, valid for the access-token lifetime). */
  connectionId: string;
  /** Another broker process sharing the store, the identity server and the clock. */
  process(holderId: string, options?: Partial<TokenBrokerOptions>): BrokerProcess;
  /** Moves the clock and the fake timers forward together, running what falls due (and the promises it settles). */
  advance(ms: number): Promise<void>;
  /** Moves the clock (not the timers) past the stored token's expiry. */
  expire(): Promise<void>;
  /** Lets pending promise callbacks run (no time passes). */
  settle(): Promise<void>;
}

/** Saves one connection with one tenant and starts a broker on it. */
export async function startCore(options: CoreOptions = {}): Promise<CoreFixture> {
  const clock = new ManualClock(START);
  vi.setSystemTime(START);
  const store = new MemoryTokenStore(clock);
  const identity = new MemoryIdentityServer(clock, options.identity);
  const { connectionId } = await store.saveConnection({
    xeroUserId: "user-1",
    tokenSet: identity.grant(),
    tenants: [{ tenantId: TENANT, xeroConnectionId: "xc-1", tenantName: "Org A", tenantType: "ORGANISATION", authEventId: undefined }],
  });
  const process = (holderId: string, more: Partial<TokenBrokerOptions> = {}): BrokerProcess => {
    const events: RefreshEvent[] = [];
    const waits: RefreshWaitEvent[] = [];
    const broker = new TokenBroker({
      store: store.parts,
      identity,
      clock,
      onRefresh: (e) => events.push(e),
      onWait: (e) => waits.push(e),
      ...options.broker,
      ...more,
      refresher: { holderId, ...options.broker?.refresher, ...more.refresher },
    });
    return { broker, events, waits, scheduler: (o) => new Scheduler(broker, store, clock, o) };
  };
  const first = process("process-a");
  return {
    ...first,
    clock,
    store,
    identity,
    connectionId,
    process,
    async advance(ms) {
      clock.advance(ms);
      await vi.advanceTimersByTimeAsync(ms);
    },
    async expire() {
      const token = await store.getToken(connectionId);
      clock.set(token!.expiresAt + 1000);
    },
    async settle() {
      await vi.advanceTimersByTimeAsync(0);
    },
  };
}
