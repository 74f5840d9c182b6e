import { FakeXeroError } from "./errors.js";
import { SlidingWindow } from "./sliding-window.js";

/** Which of Xero's limits a 429 is about: the `X-Rate-Limit-Problem` header's value. */
export type RateLimitProblem = "minute" | "day" | "concurrent" | "appminute";

/** Every problem, in the order the limiter checks them. */
export const RATE_LIMIT_PROBLEMS: readonly RateLimitProblem[] = ["day", "minute", "concurrent", "appminute"];

/** Xero's API limits (per tenant, and per app across tenants), settable for other tiers and for tests. */
export interface XeroApiLimits {
  /** Calls one tenant may have in progress at once; Xero: 5. */
  tenantCallsInFlight: number;
  /** Calls per tenant in a rolling minute; Xero: 60. */
  tenantCallsPerMinute: number;
  /** Calls per tenant in a rolling day; Xero: 5,000 (1,000 on the Starter tier). */
  tenantCallsPerDay: number;
  /** Calls of the whole app, all tenants together, in a rolling minute; Xero: 10,000. */
  appCallsPerMinute: number;
  /** Length of a "minute" in ms; default 60,000 (tests may use e.g. 2,000). */
  minuteMs: number;
  /** Length of a "day" in ms; default 86,400,000. */
  dayMs: number;
}

/** Xero's published limits. */
export const XERO_API_LIMITS: Readonly<XeroApiLimits> = {
  tenantCallsInFlight: 5,
  tenantCallsPerMinute: 60,
  tenantCallsPerDay: 5000,
  appCallsPerMinute: 10_000,
  minuteMs: 60_000,
  dayMs: 86_400_000,
};

/** 429s sent, by problem. */
export type RateLimitedCounts = Record<RateLimitProblem, number>;

/** What the fake saw of one tenant's API calls (calls with a valid token and a tenant of its grant). */
export interface TenantApiUsage {
  /** Calls received, answered or refused. */
  calls: number;
  /** Calls in progress now (from arrival to the end of the response). */
  inFlight: number;
  /** The most calls ever in progress at once, refused ones included: can exceed the concurrent limit. */
  maxInFlight: number;
  /** 429s sent, by `X-Rate-Limit-Problem`. */
  rateLimited: RateLimitedCounts;
}

/** What the fake saw of the whole app's API calls (every tenant, plus `/connections`). */
export interface AppApiUsage {
  calls: number;
  rateLimited: RateLimitedCounts;
}

/** A 429 scripted by a test (see `FakeXero.injectRateLimit`). */
export interface InjectedRateLimit {
  /** The tenant held; without it the whole app is held (every tenant and `/connections`). */
  tenantId?: string;
  /** How long the hold lasts, s; also the first 429's `Retry-After`. */
  retryAfterS: number;
  /** The `X-Rate-Limit-Problem` the 429s carry. */
  problem: RateLimitProblem;
}

/** The answer to one call: admitted or not, the headers to send, and `release` once its response ended. */
export type Admission =
  | { ok: true; headers: Record<string, string>; release: () => void }
  | { ok: false; problem: RateLimitProblem; retryAfterSeconds: number; headers: Record<string, string>; release: () => void };

/** Xero's limits, counted per tenant and per app, without HTTP. */
export interface RateLimiter {
  /** The limits in force. */
  readonly limits: Readonly<XeroApiLimits>;
  /** Changes some limits from now on (counts so far are kept). */
  setLimits(limits: Partial<XeroApiLimits>): void;
  /**
   * Counts one call to `tenantId` (undefined: a call without a tenant, such as
   * `/connections`, that only the app limit applies to) and admits or refuses it.
   */
  admit(tenantId: string | undefined): Admission;
  /** The counters of one tenant (zeros if it was never called). */
  usage(tenantId: string): TenantApiUsage;
  /** The app's counters. */
  appUsage(): AppApiUsage;
  /** Holds a tenant (or the app) with 429s until `retryAfterS` has passed. */
  inject(hold: InjectedRateLimit): void;
  /** Forgets every count, window and hold. */
  reset(): void;
}

interface TenantState {
  calls: number;
  inFlight: number;
  maxInFlight: number;
  admittedInFlight: number;
  rateLimited: RateLimitedCounts;
  minute: SlidingWindow;
  day: SlidingWindow;
  hold?: Hold;
}

interface AppState {
  calls: number;
  rateLimited: RateLimitedCounts;
  minute: SlidingWindow;
  hold?: Hold;
}

/** An injected 429: until when (ms), and which problem it names. */
interface Hold {
  until: number;
  problem: RateLimitProblem;
}

/** Creates a limiter with `limits` over Xero's defaults; `now` is the clock in ms. */
export function createRateLimiter(limits: Partial<XeroApiLimits>, now: () => number): RateLimiter {
  let current: XeroApiLimits = checkLimits({ ...XERO_API_LIMITS, ...limits });
  let tenants = new Map<string, TenantState>();
  let app: AppState = { calls: 0, rateLimited: zeros(), minute: new SlidingWindow() };

  const tenant = (tenantId: string): TenantState => {
    let t = tenants.get(tenantId);
    if (!t) {
      t = {
        calls: 0,
        inFlight: 0,
        maxInFlight: 0,
        admittedInFlight: 0,
        rateLimited: zeros(),
        minute: new SlidingWindow(),
        day: new SlidingWindow(),
      };
      tenants.set(tenantId, t);
    }
    return t;
  };

  return {
    get limits() {
      return { ...current };
    },

    setLimits(changes) {
      current = checkLimits({ ...current, ...changes });
    },

    admit(tenantId) {
      const at = now();
      const t = tenantId === undefined ? undefined : tenant(tenantId);
      const { minuteMs, dayMs } = current;
      app.calls++;
      if (t) {
        t.calls++;
        t.inFlight++;
        t.maxInFlight = Math.max(t.maxInFlight, t.inFlight);
      }
      let released = false;
      let admitted = false;
      const release = () => {
        if (released) return;
        released = true;
        if (!t) return;
        t.inFlight--;
        if (admitted) t.admittedInFlight--;
      };

      const refusal = refusalOf(current, app, t, at);

      if (!refusal) {
        admitted = true;
        app.minute.add(at);
        if (t) {
          t.admittedInFlight++;
          t.minute.add(at);
          t.day.add(at);
        }
      } else {
        app.rateLimited[refusal.problem]++;
        if (t) t.rateLimited[refusal.problem]++;
      }

      const headers: Record<string, string> = {};
      if (t) {
        headers["X-DayLimit-Remaining"] = String(Math.max(0, current.tenantCallsPerDay - t.day.count(at, dayMs)));
        headers["X-MinLimit-Remaining"] = String(Math.max(0, current.tenantCallsPerMinute - t.minute.count(at, minuteMs)));
      }
      headers["X-AppMinLimit-Remaining"] = String(Math.max(0, current.appCallsPerMinute - app.minute.count(at, minuteMs)));
      if (!refusal) return { ok: true, headers, release };
      const retryAfterSeconds = Math.max(1, Math.ceil(refusal.ms / 1000));
      headers["Retry-After"] = String(retryAfterSeconds);
      headers["X-Rate-Limit-Problem"] = refusal.problem;
      return { ok: false, problem: refusal.problem, retryAfterSeconds, headers, release };
    },

    usage(tenantId) {
      const t = tenants.get(tenantId);
      return t
        ? { calls: t.calls, inFlight: t.inFlight, maxInFlight: t.maxInFlight, rateLimited: { ...t.rateLimited } }
        : { calls: 0, inFlight: 0, maxInFlight: 0, rateLimited: zeros() };
    },

    appUsage() {
      return { calls: app.calls, rateLimited: { ...app.rateLimited } };
    },

    inject(hold) {
      if (!Number.isFinite(hold.retryAfterS) || hold.retryAfterS <= 0)
        throw new FakeXeroError("invalid_argument", `invalid retryAfterS: ${String(hold.retryAfterS)}`);
      if (!RATE_LIMIT_PROBLEMS.includes(hold.problem))
        throw new FakeXeroError("invalid_argument", `invalid problem: ${String(hold.problem)}`);
      const held: Hold = { until: now() + hold.retryAfterS * 1000, problem: hold.problem };
      if (hold.tenantId === undefined) app.hold = held;
      else tenant(hold.tenantId).hold = held;
    },

    reset() {
      // Calls in flight now keep their own state object, so releasing them later leaves the new counts alone.
      tenants = new Map();
      app = { calls: 0, rateLimited: zeros(), minute: new SlidingWindow() };
    },
  };
}

/**
 * Why a call at `at` must be refused, and for how long (ms), or undefined:
 * injected holds first, then the tenant's day, minute and concurrent limits,
 * then the app's minute.
 */
function refusalOf(
  limits: XeroApiLimits,
  app: AppState,
  t: TenantState | undefined,
  at: number,
): { problem: RateLimitProblem; ms: number } | undefined {
  const { minuteMs, dayMs } = limits;
  if (app.hold && at < app.hold.until) return { problem: app.hold.problem, ms: app.hold.until - at };
  if (t?.hold && at < t.hold.until) return { problem: t.hold.problem, ms: t.hold.until - at };
  if (t) {
    if (t.day.count(at, dayMs) >= limits.tenantCallsPerDay)
      return { problem: "day", ms: t.day.msUntilBelow(limits.tenantCallsPerDay, at, dayMs) };
    if (t.minute.count(at, minuteMs) >= limits.tenantCallsPerMinute)
      return { problem: "minute", ms: t.minute.msUntilBelow(limits.tenantCallsPerMinute, at, minuteMs) };
    if (t.admittedInFlight >= limits.tenantCallsInFlight) return { problem: "concurrent", ms: 1000 };
  }
  if (app.minute.count(at, minuteMs) >= limits.appCallsPerMinute)
    return { problem: "appminute", ms: app.minute.msUntilBelow(limits.appCallsPerMinute, at, minuteMs) };
  return undefined;
}

function zeros(): RateLimitedCounts {
  return { minute: 0, day: 0, concurrent: 0, appminute: 0 };
}

function checkLimits(limits: XeroApiLimits): XeroApiLimits {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1) throw new FakeXeroError("invalid_argument", `invalid ${name}: ${String(value)}`);
  }
  return limits;
}
