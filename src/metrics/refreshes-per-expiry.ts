import type { RefreshEvent } from "../broker/refresh-events.js";

/**
 * Counts, for each token set, how many times its refresh token was spent for
 * the latest expiry (stored version) that was refreshed: the token responses
 * the identity server returned for refreshes from that version, plus one for
 * each of those whose version another holder refreshed as well (it took over
 * the lease, or committed first). One refresh per expiry reads 1; a double
 * refresh reads 2.
 *
 * Only what this process saw is counted: another process's refresh shows up
 * here only when it collided with one of ours.
 */
export class RefreshesPerExpiry {
  private readonly latest = new Map<string, { fromVersion: number; count: number }>();

  /** Takes a refresh event into account; returns the connection's count, or undefined if nothing was spent. */
  record(event: RefreshEvent): number | undefined {
    const spent = event.upstreamRefreshes + (event.spentElsewhere ? 1 : 0);
    if (spent === 0) return undefined;
    const entry = this.latest.get(event.connectionId);
    if (!entry || event.fromVersion > entry.fromVersion) {
      this.latest.set(event.connectionId, { fromVersion: event.fromVersion, count: spent });
      return spent;
    }
    if (event.fromVersion === entry.fromVersion) entry.count += spent;
    return entry.count;
  }

  /** The count for the latest refreshed version of a connection, if it was refreshed. */
  get(connectionId: string): number | undefined {
    return this.latest.get(connectionId)?.count;
  }
}
