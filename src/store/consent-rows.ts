import { timingSafeEqual } from "node:crypto";
import { LINK_PREFIX, type AuthorizationStatus } from "./pending-authorization.js";

/** Pending authorisations are forgotten this long after they expired. */
export const FORGET_AUTHORIZATIONS_AFTER_MS = 24 * 60 * 60_000;

/** A row of the `oauth_states` table, as both stores read it. */
export interface AuthorizationRow {
  state: string;
  code_verifier: string;
  browser_hash: string | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  connection_id: string | null;
  error: string | null;
}

/** The consent's browser is the one asking: a real browser hash (not a link's, not none), compared in constant time. */
export function sameBrowser(stored: string | null, asking: string | undefined): boolean {
  if (stored === null || asking === undefined || stored.startsWith(LINK_PREFIX)) return false;
  const a = Buffer.from(stored);
  const b = Buffer.from(asking);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Where a consent stands at `now`. */
export function toAuthorizationStatus(row: AuthorizationRow, now: number): AuthorizationStatus {
  const status: AuthorizationStatus["status"] =
    row.connection_id !== null ? "done" : row.error !== null ? "failed" : now >= row.expires_at ? "expired" : "pending";
  return { status, connectionId: row.connection_id ?? undefined, error: row.error ?? undefined, expiresAt: row.expires_at };
}
