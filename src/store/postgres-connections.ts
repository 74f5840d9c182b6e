import { randomUUID } from "node:crypto";
import type { Tenant } from "../token-set.js";
import { type SummaryRow, type TenantRow, toConnectionSummaries, toTenant } from "./connection-rows.js";
import type { ConnectionStore, ConnectionSummary, RemovedTenant, SaveConnectionInput, TenantCheckState } from "./connection-store.js";
import type { PostgresDatabase, Queryable } from "./postgres-database.js";
import { sealTokenColumns } from "./sealed-token-columns.js";
import { tokenParams } from "./token-rows.js";

/**
 * {@link ConnectionStore} in PostgreSQL's `connections` and `tenants` tables
 * (a new grant's token set in `token_sets`). Every write tells every broker
 * (NOTIFY) which connection changed.
 */
export class PostgresConnections implements ConnectionStore {
  readonly #db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.#db = db;
  }

  async findConnectionByTenant(tenantId: string): Promise<string | undefined> {
    // PostgreSQL text cannot hold NUL: such an id (from the network) names no tenant.
    if (tenantId.includes("\u0000")) return undefined;
    return this.#db.reads.get("tenant", tenantId, async () => {
      const { rows } = await this.#db.query<{ id: string }>(
        `SELECT c.id FROM tenants t JOIN connections c ON c.id = t.connection_id
         WHERE t.tenant_id = $1 AND t.state = 'active'
         ORDER BY c.state = 'active' DESC, c.authorised_at DESC LIMIT 1`,
        [tenantId],
      );
      return rows[0]?.id;
    });
  }

  async saveConnection(input: SaveConnectionInput): Promise<{ connectionId: string; created: boolean }> {
    const now = this.#db.clock.now();
    const cipher = this.#db.cipher;
    return this.#db.transaction(async (client, notify) => {
      let existing: string | undefined;
      let created = false;
      let connectionId: string;
      if (input.custom) {
        // A custom connection is found by its name: the same statement creates it or brings it back with new credentials.
        const { rows } = await client.query<{ id: string; created: boolean }>(
          `INSERT INTO connections (id, xero_user_id, user_name, created_at, authorised_at, custom_name, client_id)
           VALUES ($1, NULL, $2, $3, $3, $4, $5)
           ON CONFLICT (custom_name) DO UPDATE SET state = 'active', authorised_at = $3, last_error = NULL, client_id = $5
           RETURNING id, (xmax = 0) AS created`,
          [randomUUID(), input.userName ?? null, now, input.custom.name, input.custom.clientId],
        );
        connectionId = rows[0]!.id;
        created = rows[0]!.created;
        if (!created) existing = connectionId;
      } else if (input.xeroUserId !== undefined) {
        // One statement that either creates the user's connection or finds it, whoever else saves the same user now.
        const { rows } = await client.query<{ id: string; created: boolean }>(
          `INSERT INTO connections (id, xero_user_id, user_name, created_at, authorised_at) VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT (xero_user_id) DO UPDATE SET state = 'active', authorised_at = $4, last_error = NULL,
             user_name = COALESCE($3, connections.user_name)
           RETURNING id, (xmax = 0) AS created`,
          [randomUUID(), input.xeroUserId, input.userName ?? null, now],
        );
        connectionId = rows[0]!.id;
        created = rows[0]!.created;
        if (!created) existing = connectionId;
      } else {
        connectionId = randomUUID();
        created = true;
        await client.query(
          `INSERT INTO connections (id, xero_user_id, user_name, created_at, authorised_at) VALUES ($1, NULL, $2, $3, $3)`,
          [connectionId, input.userName ?? null, now],
        );
      }
      const { rows: versions } = await client.query<{ version: number }>(
        `SELECT version FROM token_sets WHERE connection_id = $1 FOR UPDATE`,
        [connectionId],
      );
      const version = existing === undefined ? 1 : (versions[0]?.version ?? 0) + 1;
      const p = sealTokenColumns(tokenParams(connectionId, input.tokenSet, version), cipher);
      await client.query(
        `INSERT INTO token_sets (connection_id, access_token, refresh_token, id_token, token_type, scope,
           expires_at, obtained_at, refresh_token_issued_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (connection_id) DO UPDATE SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
           id_token = excluded.id_token, token_type = excluded.token_type, scope = excluded.scope, expires_at = excluded.expires_at,
           obtained_at = excluded.obtained_at, refresh_token_issued_at = excluded.refresh_token_issued_at, version = excluded.version`,
        [
          p.connection_id,
          p.access_token,
          p.refresh_token,
          p.id_token,
          p.token_type,
          p.scope,
          p.expires_at,
          p.obtained_at,
          p.refresh_token_issued_at,
          p.version,
        ],
      );
      if (existing !== undefined) await client.query(`DELETE FROM refresh_leases WHERE connection_id = $1`, [connectionId]);
      await upsertTenants(client, connectionId, input.tenants, now);
      notify({ kind: "connection", connectionId, version });
      return { connectionId, created };
    });
  }

  async saveTenants(connectionId: string, tenants: Tenant[]): Promise<void> {
    const now = this.#db.clock.now();
    await this.#db.transaction(async (client, notify) => {
      await upsertTenants(client, connectionId, tenants, now);
      notify({ kind: "connection", connectionId, version: 0 });
    });
  }

  async syncTenants(connectionId: string, tenants: Tenant[]): Promise<{ gone: Tenant[]; added: Tenant[] }> {
    const now = this.#db.clock.now();
    return this.#db.transaction(async (client, notify) => {
      const { rows: active } = await client.query<{ tenant_id: string }>(
        `SELECT tenant_id FROM tenants WHERE connection_id = $1 AND state = 'active' FOR UPDATE`,
        [connectionId],
      );
      const before = new Set(active.map((t) => t.tenant_id));
      await upsertTenants(client, connectionId, tenants, now);
      const listed = tenants.map((t) => t.tenantId);
      await client.query(`UPDATE tenants SET checked_at = $3 WHERE connection_id = $1 AND tenant_id = ANY($2::text[])`, [
        connectionId,
        listed,
        now,
      ]);
      await client.query(`UPDATE connections SET tenants_checked_at = $2 WHERE id = $1`, [connectionId, now]);
      const { rows: vanished } = await client.query<TenantRow>(
        `UPDATE tenants SET state = 'gone', gone_at = $3
         WHERE connection_id = $1 AND state = 'active' AND NOT (tenant_id = ANY($2::text[])) RETURNING *`,
        [connectionId, listed, now],
      );
      notify({ kind: "connection", connectionId, version: 0 });
      return { gone: vanished.map(toTenant), added: tenants.filter((t) => !before.has(t.tenantId)) };
    });
  }

  async listTenantChecks(): Promise<TenantCheckState[]> {
    const { rows } = await this.#db.query<{ id: string; tenants_checked_at: number | null }>(
      `SELECT id, tenants_checked_at FROM connections WHERE state = 'active' ORDER BY id`,
    );
    return rows.map((r) => ({ connectionId: r.id, claimedAt: r.tenants_checked_at ?? undefined }));
  }

  async claimTenantCheck(connectionId: string, seenClaimedAt: number | undefined): Promise<boolean> {
    // Not in what the read cache remembers: no notification.
    const { rowCount } = await this.#db.query(
      `UPDATE connections SET tenants_checked_at = $2
       WHERE id = $1 AND state = 'active' AND tenants_checked_at IS NOT DISTINCT FROM $3::bigint`,
      [connectionId, this.#db.clock.now(), seenClaimedAt ?? null],
    );
    return rowCount === 1;
  }

  async findRemovedTenant(tenantId: string): Promise<RemovedTenant | undefined> {
    if (tenantId.includes("\u0000")) return undefined;
    const { rows } = await this.#db.query<{ connection_id: string; tenant_id: string; tenant_name: string | null; gone_at: number }>(
      `SELECT connection_id, tenant_id, tenant_name, gone_at FROM tenants WHERE tenant_id = $1 AND state = 'gone'
       ORDER BY gone_at DESC LIMIT 1`,
      [tenantId],
    );
    const row = rows[0];
    return (
      row && { connectionId: row.connection_id, tenantId: row.tenant_id, tenantName: row.tenant_name ?? undefined, goneAt: row.gone_at }
    );
  }

  async markNeedsReauthorization(connectionId: string, reason: string): Promise<void> {
    await this.#db.transaction(async (client, notify) => {
      await client.query(`UPDATE connections SET state = 'needs_reauthorization', last_error = $2 WHERE id = $1`, [connectionId, reason]);
      await client.query(`DELETE FROM refresh_leases WHERE connection_id = $1`, [connectionId]);
      notify({ kind: "connection", connectionId, version: 0 });
    });
  }

  async recordError(connectionId: string, reason: string): Promise<void> {
    // Not in what the read cache remembers (only operators see it): no notification.
    await this.#db.query(`UPDATE connections SET last_error = $2 WHERE id = $1`, [connectionId, reason]);
  }

  async listConnections(): Promise<ConnectionSummary[]> {
    const { rows } = await this.#db.query<SummaryRow>(
      `SELECT c.id, c.xero_user_id, c.user_name, c.authorised_at, c.state, s.version, s.expires_at, s.refresh_token_issued_at,
         c.last_refresh_at, c.last_error, c.custom_name, c.client_id
       FROM connections c JOIN token_sets s ON s.connection_id = c.id ORDER BY c.created_at, c.id`,
    );
    const { rows: tenants } = await this.#db.query<TenantRow>(`SELECT * FROM tenants ORDER BY created_at, tenant_id`);
    return toConnectionSummaries(rows, tenants);
  }

  async removeTenant(connectionId: string, tenantId: string): Promise<boolean> {
    return this.#db.transaction(async (client, notify) => {
      const { rowCount } = await client.query(`DELETE FROM tenants WHERE connection_id = $1 AND tenant_id = $2`, [connectionId, tenantId]);
      if (rowCount === 1) notify({ kind: "connection", connectionId, version: 0 });
      return rowCount === 1;
    });
  }

  async removeConnection(connectionId: string): Promise<boolean> {
    return this.#db.transaction(async (client, notify) => {
      const { rowCount } = await client.query(`DELETE FROM connections WHERE id = $1`, [connectionId]);
      if (rowCount === 1) notify({ kind: "connection", connectionId, version: 0 });
      return rowCount === 1;
    });
  }
}

async function upsertTenants(client: Queryable, connectionId: string, tenants: Tenant[], now: number): Promise<void> {
  for (const t of tenants) {
    await client.query(
      `INSERT INTO tenants (connection_id, tenant_id, xero_connection_id, tenant_name, tenant_type, auth_event_id, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (connection_id, tenant_id) DO UPDATE SET
         xero_connection_id = excluded.xero_connection_id, tenant_name = excluded.tenant_name,
         tenant_type = excluded.tenant_type, auth_event_id = excluded.auth_event_id,
         state = 'active', gone_at = NULL`,
      [connectionId, t.tenantId, t.xeroConnectionId ?? null, t.tenantName ?? null, t.tenantType ?? null, t.authEventId ?? null, now],
    );
  }
}
