import { randomUUID } from "node:crypto";
import type { Tenant } from "../token-set.js";
import { type SummaryRow, type TenantRow, toConnectionSummaries, toTenant } from "./connection-rows.js";
import type { ConnectionStore, ConnectionSummary, RemovedTenant, SaveConnectionInput, TenantCheckState } from "./connection-store.js";
import { sealTokenColumns } from "./sealed-token-columns.js";
import type { SqliteDatabase } from "./sqlite-database.js";
import { tokenParams } from "./token-rows.js";

/** {@link ConnectionStore} in the `connections` and `tenants` tables (a new grant's token set in `token_sets`). */
export class SqliteConnections implements ConnectionStore {
  readonly #stmt;
  readonly #sqlite: SqliteDatabase;

  constructor(sqlite: SqliteDatabase) {
    this.#sqlite = sqlite;
    const db = sqlite.db;
    this.#stmt = {
      connectionByTenant: db.prepare(
        `SELECT c.id FROM tenants t JOIN connections c ON c.id = t.connection_id
         WHERE t.tenant_id = ? AND t.state = 'active'
         ORDER BY c.state = 'active' DESC, c.authorised_at DESC LIMIT 1`,
      ),
      connectionByUser: db.prepare(`SELECT id FROM connections WHERE xero_user_id = ?`),
      connectionByCustomName: db.prepare(`SELECT id FROM connections WHERE custom_name = ?`),
      tokenVersion: db.prepare(`SELECT version FROM token_sets WHERE connection_id = ?`).pluck(),
      insertConnection: db.prepare(
        `INSERT INTO connections (id, xero_user_id, user_name, created_at, authorised_at, custom_name, client_id)
         VALUES (@id, @user, @user_name, @now, @now, @custom_name, @client_id)`,
      ),
      reauthorize: db.prepare(
        `UPDATE connections SET state = 'active', authorised_at = @now, last_error = NULL,
           user_name = COALESCE(@user_name, user_name), client_id = COALESCE(@client_id, client_id) WHERE id = @id`,
      ),
      replaceToken: db.prepare(
        `INSERT OR REPLACE INTO token_sets
           (connection_id, access_token, refresh_token, id_token, token_type, scope,
            expires_at, obtained_at, refresh_token_issued_at, version)
         VALUES (@connection_id, @access_token, @refresh_token, @id_token, @token_type, @scope,
            @expires_at, @obtained_at, @refresh_token_issued_at, @version)`,
      ),
      upsertTenant: db.prepare(
        `INSERT INTO tenants (connection_id, tenant_id, xero_connection_id, tenant_name, tenant_type, auth_event_id, created_at)
         VALUES (@connection_id, @tenant_id, @xero_connection_id, @tenant_name, @tenant_type, @auth_event_id, @now)
         ON CONFLICT (connection_id, tenant_id) DO UPDATE SET
           xero_connection_id = excluded.xero_connection_id, tenant_name = excluded.tenant_name,
           tenant_type = excluded.tenant_type, auth_event_id = excluded.auth_event_id,
           state = 'active', gone_at = NULL`,
      ),
      stampChecked: db.prepare(`UPDATE tenants SET checked_at = @now WHERE connection_id = @connection_id AND tenant_id = @tenant_id`),
      stampConnectionChecked: db.prepare(`UPDATE connections SET tenants_checked_at = @now WHERE id = @id`),
      tenantChecks: db.prepare(
        `SELECT id AS connectionId, tenants_checked_at AS claimedAt FROM connections WHERE state = 'active' ORDER BY id`,
      ),
      claimCheck: db.prepare(
        `UPDATE connections SET tenants_checked_at = @now WHERE id = @id AND state = 'active' AND tenants_checked_at IS @seen`,
      ),
      removedTenant: db.prepare(
        `SELECT connection_id, tenant_id, tenant_name, gone_at FROM tenants WHERE tenant_id = ? AND state = 'gone'
         ORDER BY gone_at DESC LIMIT 1`,
      ),
      deleteLease: db.prepare(`DELETE FROM refresh_leases WHERE connection_id = ?`),
      setState: db.prepare(`UPDATE connections SET state = @state, last_error = @error WHERE id = @id`),
      setError: db.prepare(`UPDATE connections SET last_error = @error WHERE id = @id`),
      summaries: db.prepare(
        `SELECT c.id, c.xero_user_id, c.user_name, c.authorised_at, c.state, s.version, s.expires_at, s.refresh_token_issued_at,
           c.last_refresh_at, c.last_error, c.custom_name, c.client_id
         FROM connections c JOIN token_sets s ON s.connection_id = c.id ORDER BY c.created_at, c.id`,
      ),
      allTenants: db.prepare(`SELECT * FROM tenants ORDER BY created_at, tenant_id`),
      activeTenants: db.prepare(`SELECT * FROM tenants WHERE connection_id = ? AND state = 'active'`),
      markTenantGone: db.prepare(
        `UPDATE tenants SET state = 'gone', gone_at = @now WHERE connection_id = @connection_id AND tenant_id = @tenant_id`,
      ),
      deleteTenant: db.prepare(`DELETE FROM tenants WHERE connection_id = ? AND tenant_id = ?`),
      deleteConnection: db.prepare(`DELETE FROM connections WHERE id = ?`),
    };
  }

  async findConnectionByTenant(tenantId: string): Promise<string | undefined> {
    return this.#sqlite.reads.get("tenant", tenantId, () => {
      const row = this.#stmt.connectionByTenant.get(tenantId) as { id: string } | undefined;
      return row?.id;
    });
  }

  async saveConnection(input: SaveConnectionInput): Promise<{ connectionId: string; created: boolean }> {
    const now = this.#sqlite.clock.now();
    const cipher = this.#sqlite.cipher;
    return this.#sqlite.write(() => {
      const custom = input.custom;
      const xeroUserId = custom ? undefined : input.xeroUserId;
      const existing = custom
        ? (this.#stmt.connectionByCustomName.get(custom.name) as { id: string } | undefined)
        : xeroUserId === undefined
          ? undefined
          : (this.#stmt.connectionByUser.get(xeroUserId) as { id: string } | undefined);
      const connectionId = existing?.id ?? randomUUID();
      if (existing) {
        this.#stmt.reauthorize.run({ id: connectionId, now, user_name: input.userName ?? null, client_id: custom?.clientId ?? null });
        const version = this.#stmt.tokenVersion.get(connectionId) as number | undefined;
        this.#stmt.replaceToken.run(sealTokenColumns(tokenParams(connectionId, input.tokenSet, (version ?? 0) + 1), cipher));
        this.#stmt.deleteLease.run(connectionId);
      } else {
        this.#stmt.insertConnection.run({
          id: connectionId,
          user: xeroUserId ?? null,
          user_name: input.userName ?? null,
          now,
          custom_name: custom?.name ?? null,
          client_id: custom?.clientId ?? null,
        });
        this.#stmt.replaceToken.run(sealTokenColumns(tokenParams(connectionId, input.tokenSet, 1), cipher));
      }
      this.upsertTenants(connectionId, input.tenants, now);
      return { connectionId, created: !existing };
    });
  }

  async saveTenants(connectionId: string, tenants: Tenant[]): Promise<void> {
    const now = this.#sqlite.clock.now();
    this.#sqlite.write(() => this.upsertTenants(connectionId, tenants, now));
  }

  async syncTenants(connectionId: string, tenants: Tenant[]): Promise<{ gone: Tenant[]; added: Tenant[] }> {
    const now = this.#sqlite.clock.now();
    return this.#sqlite.write(() => {
      const before = new Set((this.#stmt.activeTenants.all(connectionId) as TenantRow[]).map((t) => t.tenant_id));
      this.upsertTenants(connectionId, tenants, now);
      for (const t of tenants) this.#stmt.stampChecked.run({ connection_id: connectionId, tenant_id: t.tenantId, now });
      this.#stmt.stampConnectionChecked.run({ id: connectionId, now });
      const listed = new Set(tenants.map((t) => t.tenantId));
      const vanished = (this.#stmt.activeTenants.all(connectionId) as TenantRow[]).filter((t) => !listed.has(t.tenant_id));
      for (const t of vanished) this.#stmt.markTenantGone.run({ connection_id: connectionId, tenant_id: t.tenant_id, now });
      return { gone: vanished.map(toTenant), added: tenants.filter((t) => !before.has(t.tenantId)) };
    });
  }

  async listTenantChecks(): Promise<TenantCheckState[]> {
    return (this.#stmt.tenantChecks.all() as Array<{ connectionId: string; claimedAt: number | null }>).map((r) => ({
      connectionId: r.connectionId,
      claimedAt: r.claimedAt ?? undefined,
    }));
  }

  async claimTenantCheck(connectionId: string, seenClaimedAt: number | undefined): Promise<boolean> {
    return this.#sqlite.write(() => {
      const now = this.#sqlite.clock.now();
      return this.#stmt.claimCheck.run({ id: connectionId, now, seen: seenClaimedAt ?? null }).changes === 1;
    });
  }

  async findRemovedTenant(tenantId: string): Promise<RemovedTenant | undefined> {
    const row = this.#stmt.removedTenant.get(tenantId) as
      | { connection_id: string; tenant_id: string; tenant_name: string | null; gone_at: number }
      | undefined;
    return (
      row && { connectionId: row.connection_id, tenantId: row.tenant_id, tenantName: row.tenant_name ?? undefined, goneAt: row.gone_at }
    );
  }

  async markNeedsReauthorization(connectionId: string, reason: string): Promise<void> {
    this.#sqlite.write(() => {
      this.#stmt.setState.run({ id: connectionId, state: "needs_reauthorization", error: reason });
      this.#stmt.deleteLease.run(connectionId);
    });
  }

  async recordError(connectionId: string, reason: string): Promise<void> {
    this.#sqlite.write(() => this.#stmt.setError.run({ id: connectionId, error: reason }));
  }

  async listConnections(): Promise<ConnectionSummary[]> {
    const rows = this.#stmt.summaries.all() as SummaryRow[];
    const tenants = this.#stmt.allTenants.all() as TenantRow[];
    return toConnectionSummaries(rows, tenants);
  }

  async removeTenant(connectionId: string, tenantId: string): Promise<boolean> {
    return this.#sqlite.write(() => this.#stmt.deleteTenant.run(connectionId, tenantId).changes === 1);
  }

  async removeConnection(connectionId: string): Promise<boolean> {
    return this.#sqlite.write(() => this.#stmt.deleteConnection.run(connectionId).changes === 1);
  }

  private upsertTenants(connectionId: string, tenants: Tenant[], now: number): void {
    for (const t of tenants) {
      this.#stmt.upsertTenant.run({
        connection_id: connectionId,
        tenant_id: t.tenantId,
        xero_connection_id: t.xeroConnectionId ?? null,
        tenant_name: t.tenantName ?? null,
        tenant_type: t.tenantType ?? null,
        auth_event_id: t.authEventId ?? null,
        now,
      });
    }
  }
}
