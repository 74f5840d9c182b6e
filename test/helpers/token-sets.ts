import { randomBytes } from "node:crypto";
import type { NewTokenSet } from "../../src/token-set.js";

/**
 * A token set as the identity server hands one out at `now`: random access and refresh tokens (or the
 * `overrides`), no id token, `offline_access`, 30 minutes of life.
 */
export function tokenSetAt(now: number, overrides: Partial<NewTokenSet> = {}): NewTokenSet {
  return {
    accessToken: `at-${randomBytes(12).toString("hex")}`,
    refreshToken: `rt-${randomBytes(12).toString("hex")}`,
    idToken: undefined,
    tokenType: "Bearer",
    scopes: ["offline_access"],
    expiresAt: now + 30 * 60_000,
    obtainedAt: now,
    refreshTokenIssuedAt: now,
    ...overrides,
  };
}

/** {@link tokenSetAt} with tokens named for `tag` (`access-<tag>`, `refresh-<tag>`), so a test can tell them apart. */
export function taggedTokenSet(now: number, tag: string): NewTokenSet {
  return tokenSetAt(now, { accessToken: `access-${tag}`, refreshToken: `refresh-${tag}` });
}
