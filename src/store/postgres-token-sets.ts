import type { NewTokenSet, TokenRecord } from "../token-set.js";
import type { PostgresDatabase, Queryable } from "./postgres-database.js";
import { reencryptPostgresTokenSets } from "./postgres-reencrypt.js";
import { sealTokenColumns } from "./sealed-token-columns.js";
import { freezeRecord, tokenParams, toRecord, TokenRowOpener, type TokenRow } from "./token-rows.js";
import {
  LeaseLostError,
  type LeaseResult,
  type ReencryptOptions,
  type ReencryptResult,
  type TokenSetStore,
  type TokenState,
} from "./token-set-store.js";

/** One connection's token set as a {@link TokenRow}, by connection id (`$1`). */
export const POSTGRES_SELECT_TOKEN = `SELECT s.connection_id, s.access_token, s.refresh_token, s.id_token, s.token_type, s.scope,
     s.expires_at, s.obtained_at, s.refresh_token_issued_at, s.version, c.state, c.custom_name, c.client_id,
     (SELECT string_agg(tenant_id, chr(31) ORDER BY created_at, tenant_id) FROM tenants
      WHERE connection_id = s.connection_id AND state = 'active') AS tenant_ids
   FROM token_sets s JOIN connections c ON c.id = s.connection_id
   WHERE s.connection_id = $1`;

/** The first key of the transaction-level advisory lock taken to acquire a lease (the second: the connection id's hash). */
const LEASE_LOCK_CLASS = 716_422_031;

/**
 * {@link TokenSetStore} in PostgreSQL's `token_sets` and `refresh_leases`
 * tables. Each lease taken gets a fencing number from a sequence (it grows
 * with every lease, and stays while its holder renews it); a commit locks the
 * lease row (`SELECT … FOR UPDATE`) and goes through only if the lease is
 * still its holder's, under the number it was given.
 */
export class PostgresTokenSets implements TokenSetStore {
  readonly #db: PostgresDatabase;
  readonly #rows: TokenRowOpener;
  /** The fencing number of each lease this process holds, by connection id and holder. */
  readonly #fences = new Map<string, number>();

  constructor(db: PostgresDatabase) {
    this.#db = db;
    this.#rows = new TokenRowOpener(() => db.cipher, db.logger);
  }

  async getToken(connectionId: string): Promise<TokenRecord | undefined> {
    // Every caller of the moment gets the same record, frozen (see SqliteTokenSets.getToken).
    return this.#db.reads.get("token", connectionId, async () => {
      const row = await readToken(this.#db, connectionId);
      return row && freezeRecord(toRecord(this.#rows.open(row)));
    });
  }

  async tryAcquireLease(connectionId: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    // The clock is read once this connection's lease lock is held, not before the statement is sent: a lease
    // another process took while this statement waited (for the pool, the network, an event loop busy elsewhere)
    // was committed before this `now`, so it cannot pass for one taken "in the future" (the clock went back) and
    // be taken over, with both processes then sending the same refresh token.
    const taken = await this.#db.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [LEASE_LOCK_CLASS, connectionId]);
      const now = this.#db.clock.now();
      return client.query<{ fence: number }>(
        `INSERT INTO refresh_leases (connection_id, holder, acquired_at, expires_at, fence)
       VALUES ($1, $2, $3, $4, nextval('refresh_lease_fence'))
       ON CONFLICT (connection_id) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
         expires_at = excluded.expires_at,
         fence = CASE WHEN refresh_leases.holder = excluded.holder THEN refresh_leases.fence ELSE excluded.fence END
       WHERE refresh_leases.expires_at <= $3 OR refresh_leases.holder = $2
         -- taken further "in the future" than a lease lasts: the clock went back, so the expiry cannot be trusted
         -- either (a lease stamped a moment after $3 is another host's, taken while this statement waited)
         OR refresh_leases.acquired_at - $3 > refresh_leases.expires_at - refresh_leases.acquired_at
       RETURNING fence`,
        [connectionId, holder, now, now + ttlMs],
      );
    });
    // The reads that follow a lease taken see whatever its last holder committed, even before its notification arrives.
    this.#db.reads.changed([["token", connectionId]]);
    if (taken.rows.length === 1) {
      this.#fences.set(fenceKey(connectionId, holder), taken.rows[0]!.fence);
      return { acquired: true };
    }
    const { rows } = await this.#db.query<{ holder: string; expires_at: number }>(
      `SELECT holder, expires_at FROM refresh_leases WHERE connection_id = $1`,
      [connectionId],
    );
    // The lease vanished between the two statements: the holder finished.
    if (rows.length === 0) return this.tryAcquireLease(connectionId, holder, ttlMs);
    return { acquired: false, holder: rows[0]!.holder, expiresAt: rows[0]!.expires_at };
  }

  async releaseLease(connectionId: string, holder: string): Promise<void> {
    this.#fences.delete(fenceKey(connectionId, holder));
    await this.#db.query(`DELETE FROM refresh_leases WHERE connection_id = $1 AND holder = $2`, [connectionId, holder]);
  }

  async commitRefresh(connectionId: string, holder: string, fromVersion: number, tokenSet: NewTokenSet): Promise<TokenRecord> {
    const fence = this.#fences.get(fenceKey(connectionId, holder));
    const row = await this.#db.transaction(async (client, notify) => {
      // Only the lease holder commits, under its own lease: once another process took the lease over, it sent
      // (or will send) the refresh token again, and with rotation only the latest answer is sure to stay valid.
      const lease = await client.query<{ holder: string; fence: number }>(
        `SELECT holder, fence FROM refresh_leases WHERE connection_id = $1 FOR UPDATE`,
        [connectionId],
      );
      const held = lease.rows[0];
      if (held?.holder !== holder || (fence !== undefined && held.fence !== fence)) {
        throw new LeaseLostError(`the refresh lease of ${connectionId} is no longer held by this process`);
      }
      const p = sealTokenColumns(tokenParams(connectionId, tokenSet, fromVersion + 1), this.#db.cipher);
      const updated = await client.query(
        `UPDATE token_sets SET access_token = $2, refresh_token = $3, id_token = $4, token_type = $5, scope = $6,
           expires_at = $7, obtained_at = $8, refresh_token_issued_at = $9, version = $10
         WHERE connection_id = $1 AND version = $11`,
        [
          connectionId,
          p.access_token,
          p.refresh_token,
          p.id_token,
          p.token_type,
          p.scope,
          p.expires_at,
          p.obtained_at,
          p.refresh_token_issued_at,
          p.version,
          fromVersion,
        ],
      );
      if (updated.rowCount !== 1) {
        throw new Error(`token set ${connectionId} changed while it was being refreshed (expected version ${fromVersion})`);
      }
      await client.query(`UPDATE connections SET last_refresh_at = $2, last_error = NULL WHERE id = $1`, [
        connectionId,
        this.#db.clock.now(),
      ]);
      await client.query(`DELETE FROM refresh_leases WHERE connection_id = $1 AND holder = $2`, [connectionId, holder]);
      notify({ kind: "token", connectionId, version: fromVersion + 1 });
      return (await readToken(client, connectionId))!;
    });
    this.#fences.delete(fenceKey(connectionId, holder));
    return toRecord(this.#rows.open(row));
  }

  async listLapsedLeases(now: number): Promise<string[]> {
    const { rows } = await this.#db.query<{ id: string }>(
      `SELECT l.connection_id AS id FROM refresh_leases l JOIN connections c ON c.id = l.connection_id
       WHERE c.state = 'active' AND (l.expires_at <= $1 OR l.acquired_at - $1 > l.expires_at - l.acquired_at)`,
      [now],
    );
    return rows.map((r) => r.id);
  }

  async listTokenStates(): Promise<TokenState[]> {
    const { rows } = await this.#db.query<TokenState>(
      `SELECT c.id AS "connectionId", s.version, c.state, s.expires_at AS "expiresAt", s.obtained_at AS "obtainedAt",
         s.refresh_token_issued_at AS "refreshTokenIssuedAt"
       FROM connections c JOIN token_sets s ON s.connection_id = c.id`,
    );
    return rows;
  }

  async reencrypt(options: ReencryptOptions): Promise<ReencryptResult> {
    try {
      return await reencryptPostgresTokenSets(this.#db, options);
    } finally {
      this.#db.reads.forgetAll();
    }
  }

  async keyIds(): Promise<Array<string | null>> {
    const { rows } = await this.#db.query<{ key_id: string | null }>(`SELECT DISTINCT key_id FROM token_sets`);
    return rows.map((r) => r.key_id);
  }

  async unsealed(): Promise<string[]> {
    const clear = (column: string) => `(${column} IS NOT NULL AND left(${column}, 5) <> 'tbx1:')`;
    const { rows } = await this.#db.query<{ connection_id: string }>(
      `SELECT connection_id FROM token_sets WHERE ${["access_token", "refresh_token", "id_token"].map(clear).join(" OR ")}
       ORDER BY connection_id`,
    );
    return rows.map((r) => r.connection_id);
  }
}

/** The stored row of one connection's token set, secrets still sealed. */
export async function readToken(client: Queryable, connectionId: string): Promise<TokenRow | undefined> {
  const { rows } = await client.query<TokenRow>(POSTGRES_SELECT_TOKEN, [connectionId]);
  return rows[0];
}

function fenceKey(connectionId: string, holder: string): string {
  return `${connectionId}\u0000${holder}`;
}
