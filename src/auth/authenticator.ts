import type { ApiKeyRecord, ApiKeyStore } from "../store/api-key-store.js";
import { StoreUnavailableError } from "../store/store.js";
import { bearerKey, hashApiKey, isWellFormedKey, type Principal } from "./api-key.js";

/** Options for {@link createAuthenticator}. */
export interface AuthenticatorOptions {
  /** Where keys are looked up. */
  keys: Pick<ApiKeyStore, "findActive" | "isActive" | "markUsed">;
  /**
   * How long a key found in the store is trusted without asking again, ms
   * (default 500). Keys are revoked by `tokenbroker keys revoke` in another
   * process, so this bounds how long a revoked key's new calls keep working
   * (its open WatchToken streams are checked past this cache: see `stillActive`).
   */
  cacheTtlMs?: number;
  /** A key's `last_used_at` is written at most this often, ms (default 60 000): one write a minute, not one a request. */
  lastUsedEveryMs?: number;
  /** Wall-clock time, ms (default Date.now). */
  now?: () => number;
}

/** Turns an `authorization` header into the caller behind it. */
export interface Authenticator {
  /** The principal of a `Bearer` key, or undefined for no, malformed, unknown or revoked key. */
  authenticate(authorization: string | null | undefined): Promise<Principal | undefined>;
  /**
   * The principal of a `Bearer` key found in the cache, at once; undefined
   * when it is not cached (ask `authenticate`). Optional: other
   * authenticators may have no cache.
   */
  cached?(authorization: string | null | undefined): Principal | undefined;
  /** The principal of a key by its hash (sessions), or undefined once it is revoked. */
  byHash(keyHash: string): Promise<Principal | undefined>;
  /** Drops cached keys (all, or one), e.g. right after a revocation in this process. */
  forget(keyHash?: string): void;
  /**
   * Whether the key is active now, read from the store past the cache (open
   * WatchToken streams are checked with it). A key found revoked is also
   * dropped from the cache, so that its new calls are refused at once.
   */
  stillActive(keyHash: string): boolean;
}

const MAX_CACHED = 10_000;

/**
 * Key lookup for the hot path: a key is hashed, then found in a small cache
 * (valid for `cacheTtlMs`) or in the store. Malformed keys are refused
 * before any lookup; unknown keys are not cached, so guessing fills nothing.
 * While the store cannot be reached, a key found active before (and not
 * known to be revoked since) keeps working.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const ttl = options.cacheTtlMs ?? 500;
  const usedEvery = options.lastUsedEveryMs ?? 60_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { principal: Principal; until: number }>();
  const lastMarked = new Map<string, number>();
  // The hash of each `authorization` value whose key was found in the cache: a caller sending the same
  // header again costs a lookup, not a SHA-256 (about 1.5 µs a call). Only keys found active get in, so
  // guesses fill nothing; whether the key is still active is decided by `cache` as before.
  const hashOfHeader = new Map<string, string>();

  /** Marks the key used in the store, at most every `lastUsedEveryMs`. */
  function used(keyHash: string, t: number): void {
    if (t - (lastMarked.get(keyHash) ?? -Infinity) >= usedEvery) {
      lastMarked.set(keyHash, t);
      if (lastMarked.size > MAX_CACHED) lastMarked.clear();
      options.keys.markUsed(keyHash, t).catch(() => {}); // bookkeeping only
    }
  }

  async function byHash(keyHash: string): Promise<Principal | undefined> {
    const t = now();
    const hit = cache.get(keyHash);
    let principal: Principal | undefined;
    if (hit && hit.until > t) {
      principal = hit.principal;
    } else {
      let record: ApiKeyRecord | undefined;
      try {
        record = await options.keys.findActive(keyHash);
      } catch (e) {
        // The store is out of reach (PostgreSQL down): a key found active before, and not revoked since as far as
        // this process heard, stays good until the store answers again; callers keep their cached tokens.
        if (hit && e instanceof StoreUnavailableError && options.keys.isActive(keyHash)) return hit.principal;
        throw e;
      }
      if (!record) {
        cache.delete(keyHash);
        return undefined;
      }
      principal = toPrincipal(record);
      if (cache.size >= MAX_CACHED) cache.clear();
      cache.set(keyHash, { principal, until: t + ttl });
    }
    used(keyHash, t);
    return principal;
  }

  return {
    async authenticate(authorization) {
      const key = bearerKey(authorization);
      if (key === undefined || !isWellFormedKey(key)) return undefined;
      return byHash(hashApiKey(key));
    },
    cached(authorization) {
      if (!authorization) return undefined;
      const known = hashOfHeader.get(authorization);
      let keyHash = known;
      if (keyHash === undefined) {
        const key = bearerKey(authorization);
        if (key === undefined || !isWellFormedKey(key)) return undefined;
        keyHash = hashApiKey(key);
      }
      const t = now();
      const hit = cache.get(keyHash);
      if (!hit || hit.until <= t) return undefined;
      if (known === undefined) {
        if (hashOfHeader.size >= MAX_CACHED) hashOfHeader.clear();
        hashOfHeader.set(authorization, keyHash);
      }
      used(keyHash, t);
      return hit.principal;
    },
    byHash,
    forget(keyHash) {
      if (keyHash === undefined) {
        cache.clear();
        hashOfHeader.clear();
      } else {
        cache.delete(keyHash);
        for (const [header, hash] of hashOfHeader) if (hash === keyHash) hashOfHeader.delete(header);
      }
    },
    stillActive(keyHash) {
      const active = options.keys.isActive(keyHash);
      if (!active) cache.delete(keyHash);
      return active;
    },
  };
}

function toPrincipal(record: ApiKeyRecord): Principal {
  return {
    name: record.name,
    keyHash: record.keyHash,
    tenants: record.tenants === "*" ? "*" : new Set(record.tenants),
    admin: record.role === "admin",
  };
}
