import type { ConsentStore } from "./consent-store.js";
import { type AuthorizationRow, FORGET_AUTHORIZATIONS_AFTER_MS, sameBrowser, toAuthorizationStatus } from "./consent-rows.js";
import {
  LINK_PREFIX,
  type AuthorizationStatus,
  type ClaimedAuthorization,
  type NewPendingAuthorization,
  type TakenAuthorization,
} from "./pending-authorization.js";
import type { SqliteDatabase } from "./sqlite-database.js";

/** {@link ConsentStore} in the `oauth_states` table. */
export class SqliteConsents implements ConsentStore {
  readonly #stmt;
  readonly #sqlite: SqliteDatabase;

  constructor(sqlite: SqliteDatabase) {
    this.#sqlite = sqlite;
    const db = sqlite.db;
    this.#stmt = {
      insert: db.prepare(
        `INSERT INTO oauth_states (state, code_verifier, browser_hash, created_at, expires_at)
         VALUES (@state, @code_verifier, @browser_hash, @created_at, @expires_at)`,
      ),
      forget: db.prepare(`DELETE FROM oauth_states WHERE expires_at < ?`),
      get: db.prepare(`SELECT * FROM oauth_states WHERE state = ?`),
      claim: db.prepare(
        `UPDATE oauth_states SET browser_hash = @browser
         WHERE browser_hash = @link AND used_at IS NULL AND expires_at > @now
         RETURNING state, code_verifier, expires_at`,
      ),
      use: db.prepare(`UPDATE oauth_states SET used_at = @now WHERE state = @state AND used_at IS NULL`),
      finish: db.prepare(`UPDATE oauth_states SET connection_id = @connection_id, error = @error WHERE state = @state`),
    };
  }

  async createAuthorization(pending: NewPendingAuthorization): Promise<void> {
    this.#sqlite.db
      .transaction(() => {
        this.#stmt.forget.run(pending.createdAt - FORGET_AUTHORIZATIONS_AFTER_MS);
        this.#stmt.insert.run({
          state: pending.state,
          code_verifier: pending.codeVerifier,
          browser_hash: pending.browserHash,
          created_at: pending.createdAt,
          expires_at: pending.expiresAt,
        });
      })
      .immediate();
  }

  async takeAuthorization(state: string, now: number, browserHash: string | undefined): Promise<TakenAuthorization> {
    return this.#sqlite.db
      .transaction((): TakenAuthorization => {
        const row = this.#stmt.get.get(state) as AuthorizationRow | undefined;
        if (!row) return { ok: false, reason: "unknown" };
        // Before anything is written: a browser without the consent's cookie leaves the state as it was.
        if (!sameBrowser(row.browser_hash, browserHash)) return { ok: false, reason: "wrong_browser" };
        if (row.used_at !== null) return { ok: false, reason: "used" };
        this.#stmt.use.run({ state, now });
        if (now >= row.expires_at) return { ok: false, reason: "expired" };
        return { ok: true, codeVerifier: row.code_verifier };
      })
      .immediate(); // read then write: take the write lock first (see SqliteDatabase.write)
  }

  async claimAuthorization(linkHash: string, browserHash: string, now: number): Promise<ClaimedAuthorization | undefined> {
    const row = this.#stmt.claim.get({ link: `${LINK_PREFIX}${linkHash}`, browser: browserHash, now }) as
      | { state: string; code_verifier: string; expires_at: number }
      | undefined;
    return row && { state: row.state, codeVerifier: row.code_verifier, expiresAt: row.expires_at };
  }

  async finishAuthorization(state: string, outcome: { connectionId: string } | { error: string }): Promise<void> {
    this.#stmt.finish.run({
      state,
      connection_id: "connectionId" in outcome ? outcome.connectionId : null,
      error: "error" in outcome ? outcome.error : null,
    });
  }

  async getAuthorization(state: string, now: number): Promise<AuthorizationStatus | undefined> {
    const row = this.#stmt.get.get(state) as AuthorizationRow | undefined;
    if (!row) return undefined;
    return toAuthorizationStatus(row, now);
  }
}
