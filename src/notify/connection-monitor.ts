import type { TokenState } from "../store/token-set-store.js";
import { REFRESH_TOKEN_LIFETIME_MS, type ConnectionState } from "../token-set.js";
import type { ConnectionEventType } from "./connection-event.js";

/** A change in a connection worth telling a person about. */
export interface Transition {
  type: ConnectionEventType;
  state: TokenState;
}

interface Known {
  version: number;
  state: ConnectionState;
  /** The refresh token (by its issue time) already announced as expiring. */
  warnedFor: number | undefined;
}

/**
 * Notices transitions by comparing each pass's token states with the last:
 * a connection that starts needing re-authorisation, one whose refresh token
 * is within `warnBeforeMs` of its 60-day death without a refresh, and one
 * that comes back to active. Each transition is reported once. A connection
 * first seen in trouble (e.g. after a restart) is reported once too.
 */
export class ConnectionMonitor {
  private readonly known = new Map<string, Known>();

  constructor(private readonly warnBeforeMs: number) {}

  /** The transitions since the last call, given every token set's state at `now`. */
  observe(states: readonly TokenState[], now: number): Transition[] {
    const out: Transition[] = [];
    const present = new Set<string>();
    for (const t of states) {
      present.add(t.connectionId);
      const prev = this.known.get(t.connectionId);
      // A snapshot older than one already seen (needs re-authorisation comes after active at one version).
      if (prev && rank(t) < rank(prev)) continue;
      let warnedFor = prev?.warnedFor;
      if (t.state === "needs_reauthorization") {
        if (prev?.state !== "needs_reauthorization") out.push({ type: "connection.needs_reauthorization", state: t });
      } else {
        if (prev?.state === "needs_reauthorization") out.push({ type: "connection.recovered", state: t });
        const dies = t.refreshTokenIssuedAt + REFRESH_TOKEN_LIFETIME_MS;
        if (now >= dies - this.warnBeforeMs && warnedFor !== t.refreshTokenIssuedAt) {
          out.push({ type: "connection.refresh_token_expiring", state: t });
          warnedFor = t.refreshTokenIssuedAt;
        }
      }
      this.known.set(t.connectionId, { version: t.version, state: t.state, warnedFor });
    }
    for (const id of this.known.keys()) if (!present.has(id)) this.known.delete(id);
    return out;
  }
}

/** Orders snapshots of one connection: by version, then active before needs re-authorisation. */
function rank(t: { version: number; state: ConnectionState }): number {
  return t.version * 2 + (t.state === "needs_reauthorization" ? 1 : 0);
}
