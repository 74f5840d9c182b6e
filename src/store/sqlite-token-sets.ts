import type { NewTokenSet, TokenRecord } from "../token-set.js";
import { reencryptTokenSets, tokenKeyIds, unsealedTokenSets } from "./reencrypt-token-sets.js";
import { sealTokenColumns } from "./sealed-token-columns.js";
import type { SqliteDatabase } from "./sqlite-database.js";
import { freezeRecord, tokenParams, toRecord, TokenRowOpener, type TokenRow } from "./token-rows.js";
import {
  LeaseLostError,
  type LeaseResult,
  type ReencryptOptions,
  type ReencryptResult,
  type TokenSetStore,
  type TokenState,
} from "./token-set-store.js";

/** One connection's token set as a {@link TokenRow}, by connection id. */
const SELECT_TOKEN = `SELECT s.*, c.state,
     (SELECT group_concat(tenant_id, char(31)) FROM
       (SELECT tenant_id FROM tenants WHERE connection_id = s.connection_id AND state = 'active'
        ORDER BY created_at, tenant_id)) AS tenant_ids
   FROM token_sets s JOIN connections c ON c.id = s.connection_id
   WHERE s.connection_id = ?`;

/** {@link TokenSetStore} in the `token_sets` and `refresh_leases` tables. */
export class SqliteTokenSets implements TokenSetStore {
  readonly #stmt;
  readonly #sqlite: SqliteDatabase;
  readonly #rows: TokenRowOpener;

  constructor(sqlite: SqliteDatabase) {
    this.#sqlite = sqlite;
    this.#rows = new TokenRowOpener(() => sqlite.cipher, sqlite.logger);
    const db = sqlite.db;
    this.#stmt = {
      token: db.prepare(SELECT_TOKEN),
      updateToken: db.prepare(
        `UPDATE token_sets SET access_token = @access_token, refresh_token = @refresh_token,
           id_token = @id_token, token_type = @token_type, scope = @scope, expires_at = @expires_at,
           obtained_at = @obtained_at, refresh_token_issued_at = @refresh_token_issued_at, version = @version
         WHERE connection_id = @connection_id AND version = @from_version`,
      ),
      refreshed: db.prepare(`UPDATE connections SET last_refresh_at = @now, last_error = NULL WHERE id = @id`),
      acquireLease: db.prepare(
        `INSERT INTO refresh_leases (connection_id, holder, acquired_at, expires_at) VALUES (@id, @holder, @now, @expires)
         ON CONFLICT (connection_id) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
           expires_at = excluded.expires_at
         WHERE refresh_leases.expires_at <= @now OR refresh_leases.holder = @holder
           -- taken further "in the future" than a lease lasts: the clock went back, so the expiry cannot be trusted
           -- either (a lease stamped a moment after @now is another process's, taken while this one waited for the lock)
           OR refresh_leases.acquired_at - @now > refresh_leases.expires_at - refresh_leases.acquired_at`,
      ),
      lease: db.prepare(`SELECT holder, expires_at FROM refresh_leases WHERE connection_id = ?`),
      releaseLease: db.prepare(`DELETE FROM refresh_leases WHERE connection_id = ? AND holder = ?`),
      lapsed: db.prepare(
        `SELECT l.connection_id AS id FROM refresh_leases l JOIN connections c ON c.id = l.connection_id
         WHERE c.state = 'active' AND (l.expires_at <= @now OR l.acquired_at - @now > l.expires_at - l.acquired_at)`,
      ),
      states: db.prepare(
        `SELECT c.id AS connectionId, s.version, c.state, s.expires_at AS expiresAt, s.obtained_at AS obtainedAt,
           s.refresh_token_issued_at AS refreshTokenIssuedAt
         FROM connections c JOIN token_sets s ON s.connection_id = c.id`,
      ),
    };
  }

  async getToken(connectionId: string): Promise<TokenRecord | undefined> {
    // Every caller of the moment gets the same record (the gRPC fast path serializes it once for all of
    // them), frozen so that a caller changing it fails loudly instead of changing everyone's.
    return this.#sqlite.reads.get("token", connectionId, () => {
      const row = this.#stmt.token.get(connectionId) as TokenRow | undefined;
      return row && freezeRecord(toRecord(this.open(row)));
    });
  }

  async tryAcquireLease(connectionId: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    // Through write(): the reads that follow a lease taken see whatever its last holder committed. The clock is
    // read under the write lock, not before waiting for it: a lease another process took meanwhile was taken
    // before this `now`, so it cannot pass for one taken "in the future" (the clock went back) and be taken over.
    const result = this.#sqlite.write(() => {
      const now = this.#sqlite.clock.now();
      return this.#stmt.acquireLease.run({ id: connectionId, holder, now, expires: now + ttlMs });
    });
    if (result.changes === 1) return { acquired: true };
    const row = this.#stmt.lease.get(connectionId) as { holder: string; expires_at: number } | undefined;
    // The lease vanished between the two statements: the holder finished.
    if (!row) return this.tryAcquireLease(connectionId, holder, ttlMs);
    return { acquired: false, holder: row.holder, expiresAt: row.expires_at };
  }

  async releaseLease(connectionId: string, holder: string): Promise<void> {
    this.#sqlite.write(() => this.#stmt.releaseLease.run(connectionId, holder));
  }

  async commitRefresh(connectionId: string, holder: string, fromVersion: number, tokenSet: NewTokenSet): Promise<TokenRecord> {
    return this.#sqlite.write(() => {
      // Only the lease holder commits: once another process took the lease over, it sent (or will send)
      // the refresh token again, and with rotation only the latest answer is sure to stay valid.
      const lease = this.#stmt.lease.get(connectionId) as { holder: string } | undefined;
      if (lease?.holder !== holder) {
        throw new LeaseLostError(`the refresh lease of ${connectionId} is no longer held by this process`);
      }
      const updated = this.#stmt.updateToken.run({
        ...sealTokenColumns(tokenParams(connectionId, tokenSet, fromVersion + 1), this.#sqlite.cipher),
        from_version: fromVersion,
      });
      if (updated.changes !== 1) {
        throw new Error(`token set ${connectionId} changed while it was being refreshed (expected version ${fromVersion})`);
      }
      this.#stmt.refreshed.run({ id: connectionId, now: this.#sqlite.clock.now() });
      this.#stmt.releaseLease.run(connectionId, holder);
      return toRecord(this.open(this.#stmt.token.get(connectionId) as TokenRow));
    });
  }

  async listLapsedLeases(now: number): Promise<string[]> {
    return (this.#stmt.lapsed.all({ now }) as { id: string }[]).map((r) => r.id);
  }

  async listTokenStates(): Promise<TokenState[]> {
    return this.#stmt.states.all() as TokenState[];
  }

  async reencrypt(options: ReencryptOptions): Promise<ReencryptResult> {
    try {
      return await reencryptTokenSets(this.#sqlite.db, options);
    } finally {
      this.#sqlite.reads.forget();
    }
  }

  async keyIds(): Promise<Array<string | null>> {
    return tokenKeyIds(this.#sqlite.db);
  }

  async unsealed(): Promise<string[]> {
    return unsealedTokenSets(this.#sqlite.db);
  }

  private open(row: TokenRow): TokenRow {
    return this.#rows.open(row);
  }
}
