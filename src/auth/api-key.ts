import { hash, randomBytes } from "node:crypto";

/** Every key starts with this, so that a leaked key is easy to recognise (and to scan for). */
export const API_KEY_PREFIX = "tbk_";
const KEY_PATTERN = /^tbk_[A-Za-z0-9_-]{43}$/;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TENANT_PATTERN = /^[\x21-\x7e]{1,128}$/;

/** What a key may do: which tenants it may ask tokens for, and whether it may administer the broker. */
export interface KeyScope {
  /** `"*"` for every tenant and connection, or the tenant ids it may name. */
  tenants: "*" | ReadonlySet<string>;
  /** Admin keys may use the status page and `/connect`. */
  admin: boolean;
}

/** The caller behind a request: the key's name (never the key) and its scope. */
export interface Principal extends KeyScope {
  /** The name given at `tokenbroker keys create`. */
  name: string;
  /** SHA-256 of the key, hex: how sessions and caches refer to it. */
  keyHash: string;
}

/** A new random API key: `tbk_` and 32 random bytes, base64url (43 characters). */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(32).toString("base64url");
}

/**
 * The stored form of a key: hex SHA-256. A fast hash is enough here, unlike
 * for passwords: a key is 256 random bits, so no dictionary or brute-force
 * search over hashes can find it, and a slow hash (bcrypt, scrypt) would only
 * cost time on every request. Being deterministic, the hash is also the
 * lookup key: the stored hashes are never compared byte by byte against a
 * guess, so there is no timing side channel to protect.
 */
export function hashApiKey(key: string): string {
  return hash("sha256", key, "hex"); // one call: half the CPU of createHash().update().digest(), on every request
}

/** True when `key` has the shape of a tokenbroker key (checked before any lookup). */
export function isWellFormedKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

/** The key in an `authorization: Bearer <key>` header, or undefined. */
export function bearerKey(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m?.[1];
}

/** Checks a key name: 1-64 characters of letters, digits, `.`, `_`, `-`. */
export function isValidKeyName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

/** Parses `--tenants`: `*` or a comma-separated list of tenant ids; undefined if malformed. */
export function parseTenantScope(text: string): "*" | string[] | undefined {
  const trimmed = text.trim();
  if (trimmed === "*") return "*";
  const ids = trimmed
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  if (ids.length === 0 || !ids.every((t) => TENANT_PATTERN.test(t) && t !== "*")) return undefined;
  return [...new Set(ids)];
}

/** True when the scope lets a caller name this tenant. */
export function allowsTenant(scope: KeyScope, tenantId: string): boolean {
  return scope.tenants === "*" || scope.tenants.has(tenantId);
}

/**
 * True when the scope covers a connection: with `*`, always; otherwise only
 * when the connection exists, has tenants, and every one of them is in scope
 * (its token reaches all of them).
 */
export function allowsConnection(scope: KeyScope, tenantIds: readonly string[] | undefined): boolean {
  if (scope.tenants === "*") return true;
  if (!tenantIds || tenantIds.length === 0) return false;
  return tenantIds.every((t) => allowsTenant(scope, t));
}
