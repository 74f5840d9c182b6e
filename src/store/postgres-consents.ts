import type { ConsentStore } from "./consent-store.js";
import { type AuthorizationRow, FORGET_AUTHORIZATIONS_AFTER_MS, sameBrowser, toAuthorizationStatus } from "./consent-rows.js";
import {
  LINK_PREFIX,
  type AuthorizationStatus,
  type ClaimedAuthorization,
  type NewPendingAuthorization,
  type TakenAuthorization,
} from "./pending-authorization.js";
import type { PostgresDatabase } from "./postgres-database.js";

/**
 * {@link ConsentStore} in PostgreSQL's `oauth_states` table. A state is taken
 * under a row lock (`SELECT … FOR UPDATE`), so it is used once however many
 * requests, on however many hosts, race for it.
 */
export class PostgresConsents implements ConsentStore {
  readonly #db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.#db = db;
  }

  async createAuthorization(pending: NewPendingAuthorization): Promise<void> {
    await this.#db.transaction(async (client) => {
      await client.query(`DELETE FROM oauth_states WHERE expires_at < $1`, [pending.createdAt - FORGET_AUTHORIZATIONS_AFTER_MS]);
      await client.query(
        `INSERT INTO oauth_states (state, code_verifier, browser_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
        [pending.state, pending.codeVerifier, pending.browserHash, pending.createdAt, pending.expiresAt],
      );
    });
  }

  async takeAuthorization(state: string, now: number, browserHash: string | undefined): Promise<TakenAuthorization> {
    // PostgreSQL text cannot hold NUL: such a state (from the network) is unknown.
    if (state.includes("\u0000")) return { ok: false, reason: "unknown" };
    return this.#db.transaction(async (client): Promise<TakenAuthorization> => {
      const { rows } = await client.query<AuthorizationRow>(`SELECT * FROM oauth_states WHERE state = $1 FOR UPDATE`, [state]);
      const row = rows[0];
      if (!row) return { ok: false, reason: "unknown" };
      // Before anything is written: a browser without the consent's cookie leaves the state as it was.
      if (!sameBrowser(row.browser_hash, browserHash)) return { ok: false, reason: "wrong_browser" };
      if (row.used_at !== null) return { ok: false, reason: "used" };
      await client.query(`UPDATE oauth_states SET used_at = $2 WHERE state = $1 AND used_at IS NULL`, [state, now]);
      if (now >= row.expires_at) return { ok: false, reason: "expired" };
      return { ok: true, codeVerifier: row.code_verifier };
    });
  }

  async claimAuthorization(linkHash: string, browserHash: string, now: number): Promise<ClaimedAuthorization | undefined> {
    if (linkHash.includes("\u0000") || browserHash.includes("\u0000")) return undefined;
    const { rows } = await this.#db.query<{ state: string; code_verifier: string; expires_at: number }>(
      `UPDATE oauth_states SET browser_hash = $2
       WHERE browser_hash = $1 AND used_at IS NULL AND expires_at > $3
       RETURNING state, code_verifier, expires_at`,
      [`${LINK_PREFIX}${linkHash}`, browserHash, now],
    );
    const row = rows[0];
    return row && { state: row.state, codeVerifier: row.code_verifier, expiresAt: row.expires_at };
  }

  async finishAuthorization(state: string, outcome: { connectionId: string } | { error: string }): Promise<void> {
    await this.#db.query(`UPDATE oauth_states SET connection_id = $2, error = $3 WHERE state = $1`, [
      state,
      "connectionId" in outcome ? outcome.connectionId : null,
      "error" in outcome ? outcome.error : null,
    ]);
  }

  async getAuthorization(state: string, now: number): Promise<AuthorizationStatus | undefined> {
    if (state.includes("\u0000")) return undefined;
    const { rows } = await this.#db.query<AuthorizationRow>(`SELECT * FROM oauth_states WHERE state = $1`, [state]);
    const row = rows[0];
    if (!row) return undefined;
    return toAuthorizationStatus(row, now);
  }
}
