import { isIPv6 } from "node:net";

/** Options for {@link createSignInThrottle}. */
export interface SignInThrottleOptions {
  /** Failures within `windowMs` that lock a client (default 5). */
  maxFailures?: number;
  /** The window failures are counted in, ms (default 1 minute). */
  windowMs?: number;
  /** The first lock, ms (default 1 minute); each further lock doubles it. */
  lockMs?: number;
  /** The longest lock, ms (default 1 hour); a client quiet this long after its last lock starts over. */
  maxLockMs?: number;
  /** Clients remembered at most (default 10 000); beyond, the least recently seen is forgotten. */
  maxClients?: number;
  now?: () => number;
}

/** Failed sign-ins per client address, and how long a client must wait before it may try again. */
export interface SignInThrottle {
  /** How long `client` must still wait before its next sign-in is looked at, ms (0: it may try now). */
  retryAfterMs(client: string): number;
  /** Counts a failed sign-in; returns the lock it started, ms, or 0 when it started none. */
  failed(client: string): number;
  /** A successful sign-in: the client's failures are forgotten. */
  succeeded(client: string): void;
  /** Clients remembered now (at most `maxClients`). */
  readonly size: number;
}

interface ClientRecord {
  /** Failures since `windowStart`. */
  failures: number;
  windowStart: number;
  /** Locks so far: the next one lasts `lockMs × 2^locks`. */
  locks: number;
  lockedUntil: number;
}

/**
 * An in-memory throttle of failed sign-ins: `maxFailures` failures within
 * `windowMs` lock the client for `lockMs`, doubling with each further lock up
 * to `maxLockMs`. Memory is bounded: the table holds at most `maxClients`
 * clients, least recently seen dropped first (a flood of addresses can make
 * the broker forget a locked client early, never grow without limit).
 */
export function createSignInThrottle(options: SignInThrottleOptions = {}): SignInThrottle {
  const maxFailures = options.maxFailures ?? 5;
  const windowMs = options.windowMs ?? 60_000;
  const lockMs = options.lockMs ?? 60_000;
  const maxLockMs = options.maxLockMs ?? 3_600_000;
  const maxClients = options.maxClients ?? 10_000;
  const now = options.now ?? Date.now;
  const clients = new Map<string, ClientRecord>();

  /** The client's record, if it still matters at time `t` (a quiet client is forgotten). */
  function current(client: string, t: number): ClientRecord | undefined {
    const r = clients.get(client);
    if (!r) return undefined;
    const quiet = r.locks > 0 ? t >= r.lockedUntil + maxLockMs : t >= r.windowStart + windowMs;
    if (quiet) {
      clients.delete(client);
      return undefined;
    }
    return r;
  }

  return {
    retryAfterMs(client) {
      const t = now();
      const r = current(client, t);
      return r ? Math.max(0, r.lockedUntil - t) : 0;
    },
    failed(client) {
      const t = now();
      const r = current(client, t) ?? { failures: 0, windowStart: t, locks: 0, lockedUntil: 0 };
      clients.delete(client); // re-inserted last: the Map's order is least recently seen first
      clients.set(client, r);
      if (clients.size > maxClients) clients.delete(clients.keys().next().value!);
      if (t < r.lockedUntil) return 0; // not looked at while locked
      if (t >= r.windowStart + windowMs) {
        r.failures = 0;
        r.windowStart = t;
      }
      r.failures += 1;
      if (r.failures < maxFailures) return 0;
      const lock = Math.min(lockMs * 2 ** r.locks, maxLockMs);
      r.locks += 1;
      r.lockedUntil = t + lock;
      r.failures = 0;
      r.windowStart = t;
      return lock;
    },
    succeeded(client) {
      clients.delete(client);
    },
    get size() {
      return clients.size;
    },
  };
}

/**
 * The client a request is throttled as: its IPv4 address, or the /64 network of an IPv6 one (one host
 * usually holds a whole /64). An IPv4-mapped IPv6 address counts as the IPv4 address.
 */
export function clientOf(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress);
  if (mapped) return mapped[1]!;
  if (!isIPv6(remoteAddress)) return remoteAddress;
  return `${expandIPv6(remoteAddress).slice(0, 4).join(":")}::/64`;
}

/** The eight groups of an IPv6 address, as written (zone id dropped). */
function expandIPv6(address: string): string[] {
  const [head = "", tail] = address.split("%")[0]!.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = Array.from({ length: Math.max(0, 8 - left.length - right.length) }, () => "0");
  return [...left, ...zeros, ...right].map((g) => g.replace(/^0+(?=.)/, "").toLowerCase());
}
