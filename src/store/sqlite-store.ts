import { randomUUID, timingSafeEqual } from "node:crypto";
import { renameSync, rmSync } from "node:fs";
import Database from "better-sqlite3";
import { systemClock, type Clock } from "../clock.js";
import { silentLogger, type Logger } from "../logger.js";
import { createPrivateFile, octalMode, tightenFileModes } from "../private-files.js";
import type { ConnectionState, NewTokenSet, Tenant, TenantState, TokenRecord } from "../token-set.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import { migrations } from "./migrations.js";
import { ReadCache } from "./read-cache.js";
import { openTokenColumns, sealTokenColumns } from "./sealed-token-columns.js";
import { LINK_PREFIX, type AuthorisationStatus, type ClaimedAuthorisation, type NewPendingAuthorisation, type TakenAuthorisation } from "./pending-authorisation.js";
import type {
  ConnectionSummary,
  LeaseResult,
  SaveConnectionInput,
  TenantSummary,
  TokenState,
  TokenStore,
} from "./token-store.js";
import { LeaseLostError, UnreadableTokenSetError } from "./token-store.js";

/** Options for {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** Path of the database file; created if missing. */
  path: string;
  /** Time source for timestamps and lease expiry. */
  clock?: Clock;
  /** How long to wait for another process's write lock, ms (default 5000). */
  busyTimeoutMs?: number;
  /** Seals access, refresh and id tokens at rest (AES-256-GCM); without it they are stored in plain text. */
  encryption?: TokenCipher;
  /** How soon another process's commit is seen by the read cache, ms (default 5; see `ReadCache`). */
  readCacheCheckMs?: number;
  /**
   * Told why a stored token set was refused (once per connection and column
   * every {@link REFUSAL_LOG_EVERY_MS}) and which database files were made
   * private on open. Never a token.
   */
  logger?: Logger;
}

interface TokenRow {
  connection_id: string;
  access_token: string;
  refresh_token: string;
  id_token: string | null;
  token_type: string;
  scope: string;
  expires_at: number;
  obtained_at: number;
  refresh_token_issued_at: number;
  version: number;
  state: ConnectionState;
  tenant_ids: string | null;
}

interface TenantRow {
  connection_id: string;
  tenant_id: string;
  xero_connection_id: string | null;
  tenant_name: string | null;
  tenant_type: string | null;
  auth_event_id: string | null;
  state: TenantState;
  gone_at: number | null;
}

/** A token set that stays refused is logged again after this long, ms (not at every call). */
export const REFUSAL_LOG_EVERY_MS = 10 * 60_000;

/** Pending authorisations are forgotten this long after they expired. */
const FORGET_AUTHORISATIONS_AFTER_MS = 24 * 60 * 60_000;

/**
 * Opens (creating and migrating if needed) a SQLite token store.
 *
 * WAL mode with `synchronous=FULL`: a committed token set survives a crash or a
 * power cut. Several processes may share the file; refresh leases in the
 * database keep them from refreshing one token set twice.
 *
 * The database is created with mode 0600 whatever the umask (SQLite gives its
 * WAL and shared-memory files the same mode); an existing one that group or
 * others can read is made 0600, with a warning in the log.
 */
export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(options);
}

/** {@link TokenStore} on better-sqlite3. Use {@link openSqliteStore}. */
export class SqliteStore implements TokenStore {
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly cipher: TokenCipher | undefined;
  private readonly stmt;
  /** The hot reads of a cached GetToken, remembered until the database changes. */
  private readonly reads: ReadCache;
  private readonly logger: Logger;
  /** When each refusal (connection, column, problem) was last logged, `performance.now()`. */
  private readonly refusalsLogged = new Map<string, number>();

  constructor(options: SqliteStoreOptions) {
    this.clock = options.clock ?? systemClock;
    this.cipher = options.encryption;
    this.logger = options.logger ?? silentLogger;
    // A path SQLite cannot create either (no such directory) is left to SQLite, to fail with its own message.
    const created = isFile(options.path) && tryCreatePrivateFile(options.path);
    this.db = new Database(options.path);
    try {
      this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
      checkSchemaVersion(this.db);
      if (isFile(options.path) && !created) tightenDatabaseFiles(options.path, this.logger);
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = FULL");
      this.db.pragma("foreign_keys = ON");
      migrate(this.db);
      this.stmt = prepare(this.db);
      // Tokens read under one keyring are forgotten when the keyring changes (a re-read key file).
      this.reads = new ReadCache(this.db, () => this.cipher?.keyIds.join(" ") ?? "", options.readCacheCheckMs);
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  /** The underlying database, for backups and diagnostics. */
  get database(): Database.Database {
    return this.db;
  }

  /**
   * Writes a consistent copy of the database to `path` with SQLite's online
   * backup: safe while this or other processes read and write it (a write
   * during the copy makes SQLite start the copy over). The copy is written
   * under a temporary name and renamed into place when complete, so `path`
   * never holds half a database; an existing file at `path` is replaced.
   */
  async backup(path: string): Promise<void> {
    const partial = `${path}.partial-${process.pid}`;
    try {
      rmSync(partial, { force: true });
      createPrivateFile(partial); // SQLite writes into it and keeps its mode: 0600 whatever the umask
      await this.db.backup(partial);
      renameSync(partial, path);
    } finally {
      rmSync(partial, { force: true });
    }
  }

  /**
   * Runs a write of connections, tenants or token sets in a transaction; the
   * read cache forgets what it remembered. The transaction is IMMEDIATE: it
   * waits for the write lock first (busy_timeout), so a read inside it cannot
   * be overtaken by another process's commit and fail with SQLITE_BUSY when
   * it turns into a write, as a deferred one can in WAL mode.
   */
  private write<T>(body: () => T): T {
    try {
      return this.db.transaction(body).immediate();
    } finally {
      this.reads.forget();
    }
  }

  async findConnectionByTenant(tenantId: string): Promise<string | undefined> {
    return this.reads.get("tenant", tenantId, () => {
      const row = this.stmt.connectionByTenant.get(tenantId) as { id: string } | undefined;
      return row?.id;
    });
  }

  async getToken(connectionId: string): Promise<TokenRecord | undefined> {
    // Every caller of the moment gets the same record (the gRPC fast path serializes it once for all of
    // them), frozen so that a caller changing it fails loudly instead of changing everyone's.
    return this.reads.get("token", connectionId, () => {
      const row = this.stmt.token.get(connectionId) as TokenRow | undefined;
      return row && freezeRecord(toRecord(this.open(row)));
    });
  }

  /** The row with its secrets opened; a refused row is logged (at most every REFUSAL_LOG_EVERY_MS) and thrown. */
  private open(row: TokenRow): TokenRow {
    try {
      return openTokenColumns(row, this.cipher);
    } catch (e) {
      if (!(e instanceof UnreadableTokenSetError)) throw e;
      this.logRefusal(e);
      const tenantIds = toRecord(row).tenantIds;
      throw new UnreadableTokenSetError(e.connectionId, e.column, e.problem, e.message, tenantIds);
    }
  }

  private logRefusal(e: UnreadableTokenSetError): void {
    const key = `${e.connectionId}\u0000${e.column}\u0000${e.problem}`;
    const now = performance.now();
    const last = this.refusalsLogged.get(key);
    if (last !== undefined && now - last < REFUSAL_LOG_EVERY_MS) return;
    this.refusalsLogged.set(key, now);
    this.logger.error(
      { event: "token_set_refused", connectionId: e.connectionId, column: e.column, problem: e.problem },
      e.message,
    );
  }

  async saveConnection(input: SaveConnectionInput): Promise<{ connectionId: string; created: boolean }> {
    const now = this.clock.now();
    return this.write(() => {
      const existing =
        input.xeroUserId === undefined
          ? undefined
          : (this.stmt.connectionByUser.get(input.xeroUserId) as { id: string } | undefined);
      const connectionId = existing?.id ?? randomUUID();
      if (existing) {
        this.stmt.reauthorise.run({ id: connectionId, now, user_name: input.userName ?? null });
        const current = this.stmt.token.get(connectionId) as TokenRow | undefined;
        this.stmt.replaceToken.run(sealTokenColumns(tokenParams(connectionId, input.tokenSet, (current?.version ?? 0) + 1), this.cipher));
        this.stmt.deleteLease.run(connectionId);
      } else {
        this.stmt.insertConnection.run({
          id: connectionId,
          user: input.xeroUserId ?? null,
          user_name: input.userName ?? null,
          now,
        });
        this.stmt.replaceToken.run(sealTokenColumns(tokenParams(connectionId, input.tokenSet, 1), this.cipher));
      }
      this.upsertTenants(connectionId, input.tenants, now);
      return { connectionId, created: !existing };
    });
  }

  async saveTenants(connectionId: string, tenants: Tenant[]): Promise<void> {
    const now = this.clock.now();
    this.write(() => this.upsertTenants(connectionId, tenants, now));
  }

  private upsertTenants(connectionId: string, tenants: Tenant[], now: number): void {
    for (const t of tenants) {
      this.stmt.upsertTenant.run({
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

  async tryAcquireLease(connectionId: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    const now = this.clock.now();
    // Through write(): the reads that follow a lease taken see whatever its last holder committed.
    const result = this.write(() => this.stmt.acquireLease.run({ id: connectionId, holder, now, expires: now + ttlMs }));
    if (result.changes === 1) return { acquired: true };
    const row = this.stmt.lease.get(connectionId) as { holder: string; expires_at: number } | undefined;
    // The lease vanished between the two statements: the holder finished.
    if (!row) return this.tryAcquireLease(connectionId, holder, ttlMs);
    return { acquired: false, holder: row.holder, expiresAt: row.expires_at };
  }

  async releaseLease(connectionId: string, holder: string): Promise<void> {
    this.write(() => this.stmt.releaseLease.run(connectionId, holder));
  }

  async commitRefresh(
    connectionId: string,
    holder: string,
    fromVersion: number,
    tokenSet: NewTokenSet,
  ): Promise<TokenRecord> {
    return this.write(() => {
      // Only the lease holder commits: once another process took the lease over, it sent (or will send)
      // the refresh token again, and with rotation only the latest answer is sure to stay valid.
      const lease = this.stmt.lease.get(connectionId) as { holder: string } | undefined;
      if (lease?.holder !== holder) {
        throw new LeaseLostError(`the refresh lease of ${connectionId} is no longer held by this process`);
      }
      const updated = this.stmt.updateToken.run({
        ...sealTokenColumns(tokenParams(connectionId, tokenSet, fromVersion + 1), this.cipher),
        from_version: fromVersion,
      });
      if (updated.changes !== 1) {
        throw new Error(`token set ${connectionId} changed while it was being refreshed (expected version ${fromVersion})`);
      }
      this.stmt.refreshed.run({ id: connectionId, now: this.clock.now() });
      this.stmt.releaseLease.run(connectionId, holder);
      return toRecord(this.open(this.stmt.token.get(connectionId) as TokenRow));
    });
  }

  async markNeedsReauthorization(connectionId: string, reason: string): Promise<void> {
    this.write(() => {
      this.stmt.setState.run({ id: connectionId, state: "needs_reauthorization", error: reason });
      this.stmt.deleteLease.run(connectionId);
    });
  }

  async recordError(connectionId: string, reason: string): Promise<void> {
    this.write(() => this.stmt.setError.run({ id: connectionId, error: reason }));
  }

  async listLapsedLeases(now: number): Promise<string[]> {
    return (this.stmt.lapsed.all({ now }) as { id: string }[]).map((r) => r.id);
  }

  async listTokenStates(): Promise<TokenState[]> {
    return this.stmt.states.all() as TokenState[];
  }

  async listConnections(): Promise<ConnectionSummary[]> {
    const rows = this.stmt.summaries.all() as Array<{
      id: string;
      xero_user_id: string | null;
      user_name: string | null;
      authorised_at: number;
      state: ConnectionState;
      version: number;
      expires_at: number;
      refresh_token_issued_at: number;
      last_refresh_at: number | null;
      last_error: string | null;
    }>;
    const tenants = this.stmt.allTenants.all() as TenantRow[];
    return rows.map((r) => ({
      connectionId: r.id,
      xeroUserId: r.xero_user_id ?? undefined,
      userName: r.user_name ?? undefined,
      authorisedAt: r.authorised_at,
      state: r.state,
      version: r.version,
      expiresAt: r.expires_at,
      refreshTokenIssuedAt: r.refresh_token_issued_at,
      lastRefreshAt: r.last_refresh_at ?? undefined,
      lastError: r.last_error ?? undefined,
      tenants: tenants.filter((t) => t.connection_id === r.id).map(toTenantSummary),
    }));
  }

  async syncTenants(connectionId: string, tenants: Tenant[]): Promise<{ gone: Tenant[] }> {
    const now = this.clock.now();
    return this.write(() => {
      this.upsertTenants(connectionId, tenants, now);
      const listed = new Set(tenants.map((t) => t.tenantId));
      const vanished = (this.stmt.activeTenants.all(connectionId) as TenantRow[]).filter((t) => !listed.has(t.tenant_id));
      for (const t of vanished) this.stmt.markTenantGone.run({ connection_id: connectionId, tenant_id: t.tenant_id, now });
      return { gone: vanished.map(toTenant) };
    });
  }

  async removeTenant(connectionId: string, tenantId: string): Promise<boolean> {
    return this.write(() => this.stmt.deleteTenant.run(connectionId, tenantId).changes === 1);
  }

  async removeConnection(connectionId: string): Promise<boolean> {
    return this.write(() => this.stmt.deleteConnection.run(connectionId).changes === 1);
  }

  async createAuthorisation(pending: NewPendingAuthorisation): Promise<void> {
    this.db.transaction(() => {
      this.stmt.forgetAuthorisations.run(pending.createdAt - FORGET_AUTHORISATIONS_AFTER_MS);
      this.stmt.insertAuthorisation.run({
        state: pending.state,
        code_verifier: pending.codeVerifier,
        browser_hash: pending.browserHash,
        created_at: pending.createdAt,
        expires_at: pending.expiresAt,
      });
    }).immediate();
  }

  async takeAuthorisation(state: string, now: number, browserHash: string | undefined): Promise<TakenAuthorisation> {
    return this.db.transaction((): TakenAuthorisation => {
      const row = this.stmt.authorisation.get(state) as AuthorisationRow | undefined;
      if (!row) return { ok: false, reason: "unknown" };
      // Before anything is written: a browser without the consent's cookie leaves the state as it was.
      if (!sameBrowser(row.browser_hash, browserHash)) return { ok: false, reason: "wrong_browser" };
      if (row.used_at !== null) return { ok: false, reason: "used" };
      this.stmt.useAuthorisation.run({ state, now });
      if (now >= row.expires_at) return { ok: false, reason: "expired" };
      return { ok: true, codeVerifier: row.code_verifier };
    }).immediate(); // read then write: take the write lock first (see write())
  }

  async claimAuthorisation(linkHash: string, browserHash: string, now: number): Promise<ClaimedAuthorisation | undefined> {
    const row = this.stmt.claimAuthorisation.get({ link: `${LINK_PREFIX}${linkHash}`, browser: browserHash, now }) as
      | { state: string; code_verifier: string; expires_at: number }
      | undefined;
    return row && { state: row.state, codeVerifier: row.code_verifier, expiresAt: row.expires_at };
  }

  async finishAuthorisation(state: string, outcome: { connectionId: string } | { error: string }): Promise<void> {
    this.stmt.finishAuthorisation.run({
      state,
      connection_id: "connectionId" in outcome ? outcome.connectionId : null,
      error: "error" in outcome ? outcome.error : null,
    });
  }

  async getAuthorisation(state: string, now: number): Promise<AuthorisationStatus | undefined> {
    const row = this.stmt.authorisation.get(state) as AuthorisationRow | undefined;
    if (!row) return undefined;
    const status: AuthorisationStatus["status"] =
      row.connection_id !== null ? "done" : row.error !== null ? "failed" : now >= row.expires_at ? "expired" : "pending";
    return { status, connectionId: row.connection_id ?? undefined, error: row.error ?? undefined, expiresAt: row.expires_at };
  }

  async ping(): Promise<void> {
    // Reads the schema and a page of a real table, not just `SELECT 1`; throws once the database is closed.
    this.stmt.ping.get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

function tryCreatePrivateFile(path: string): boolean {
  try {
    return createPrivateFile(path);
  } catch {
    return false;
  }
}

/** True for a database path that names a file (not `:memory:`, a temporary database or a `file:` URI). */
function isFile(path: string): boolean {
  return path !== "" && path !== ":memory:" && !path.startsWith("file:");
}

/**
 * Makes an existing database, WAL or shared-memory file that group or others
 * can access 0600, and logs it. A file that cannot be changed (another
 * owner) is logged, not fatal. (New WAL and shared-memory files get the
 * database file's mode from SQLite.)
 */
function tightenDatabaseFiles(path: string, logger: Logger): void {
  for (const f of tightenFileModes([path, `${path}-wal`, `${path}-shm`])) {
    if (f.tightened) {
      logger.warn(
        { event: "file_mode_tightened", file: f.file, from: octalMode(f.from), to: "0600" },
        `${f.file} was open to group or others (mode ${octalMode(f.from)}): made it 0600`,
      );
    } else {
      logger.warn(
        { event: "file_mode_open", file: f.file, mode: octalMode(f.from), error: f.error },
        `${f.file} is open to group or others (mode ${octalMode(f.from)}) and cannot be changed (${f.error}): chmod 600 ${f.file}`,
      );
    }
  }
}

/** Refuses a database written by a newer tokenbroker, before touching it. */
function checkSchemaVersion(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > migrations.length) {
    throw new Error(
      `database schema version ${current} is newer than this tokenbroker supports (${migrations.length}); upgrade tokenbroker`,
    );
  }
}

function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

function prepare(db: Database.Database) {
  return {
    connectionByTenant: db.prepare(
      `SELECT c.id FROM tenants t JOIN connections c ON c.id = t.connection_id
       WHERE t.tenant_id = ? AND t.state = 'active'
       ORDER BY c.state = 'active' DESC, c.authorised_at DESC LIMIT 1`,
    ),
    connectionByUser: db.prepare(`SELECT id FROM connections WHERE xero_user_id = ?`),
    token: db.prepare(
      `SELECT s.*, c.state,
         (SELECT group_concat(tenant_id, char(31)) FROM
           (SELECT tenant_id FROM tenants WHERE connection_id = s.connection_id AND state = 'active'
            ORDER BY created_at, tenant_id)) AS tenant_ids
       FROM token_sets s JOIN connections c ON c.id = s.connection_id
       WHERE s.connection_id = ?`,
    ),
    insertConnection: db.prepare(
      `INSERT INTO connections (id, xero_user_id, user_name, created_at, authorised_at)
       VALUES (@id, @user, @user_name, @now, @now)`,
    ),
    reauthorise: db.prepare(
      `UPDATE connections SET state = 'active', authorised_at = @now, last_error = NULL,
         user_name = COALESCE(@user_name, user_name) WHERE id = @id`,
    ),
    replaceToken: db.prepare(
      `INSERT OR REPLACE INTO token_sets
         (connection_id, access_token, refresh_token, id_token, token_type, scope,
          expires_at, obtained_at, refresh_token_issued_at, version)
       VALUES (@connection_id, @access_token, @refresh_token, @id_token, @token_type, @scope,
          @expires_at, @obtained_at, @refresh_token_issued_at, @version)`,
    ),
    updateToken: db.prepare(
      `UPDATE token_sets SET access_token = @access_token, refresh_token = @refresh_token,
         id_token = @id_token, token_type = @token_type, scope = @scope, expires_at = @expires_at,
         obtained_at = @obtained_at, refresh_token_issued_at = @refresh_token_issued_at, version = @version
       WHERE connection_id = @connection_id AND version = @from_version`,
    ),
    refreshed: db.prepare(`UPDATE connections SET last_refresh_at = @now, last_error = NULL WHERE id = @id`),
    upsertTenant: db.prepare(
      `INSERT INTO tenants (connection_id, tenant_id, xero_connection_id, tenant_name, tenant_type, auth_event_id, created_at)
       VALUES (@connection_id, @tenant_id, @xero_connection_id, @tenant_name, @tenant_type, @auth_event_id, @now)
       ON CONFLICT (connection_id, tenant_id) DO UPDATE SET
         xero_connection_id = excluded.xero_connection_id, tenant_name = excluded.tenant_name,
         tenant_type = excluded.tenant_type, auth_event_id = excluded.auth_event_id,
         state = 'active', gone_at = NULL`,
    ),
    acquireLease: db.prepare(
      `INSERT INTO refresh_leases (connection_id, holder, acquired_at, expires_at) VALUES (@id, @holder, @now, @expires)
       ON CONFLICT (connection_id) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
         expires_at = excluded.expires_at
       WHERE refresh_leases.expires_at <= @now OR refresh_leases.holder = @holder
         -- taken "in the future": the clock went back, so the expiry cannot be trusted either
         OR refresh_leases.acquired_at > @now`,
    ),
    lease: db.prepare(`SELECT holder, expires_at FROM refresh_leases WHERE connection_id = ?`),
    releaseLease: db.prepare(`DELETE FROM refresh_leases WHERE connection_id = ? AND holder = ?`),
    deleteLease: db.prepare(`DELETE FROM refresh_leases WHERE connection_id = ?`),
    setState: db.prepare(`UPDATE connections SET state = @state, last_error = @error WHERE id = @id`),
    setError: db.prepare(`UPDATE connections SET last_error = @error WHERE id = @id`),
    lapsed: db.prepare(
      `SELECT l.connection_id AS id FROM refresh_leases l JOIN connections c ON c.id = l.connection_id
       WHERE c.state = 'active' AND (l.expires_at <= @now OR l.acquired_at > @now)`,
    ),
    states: db.prepare(
      `SELECT c.id AS connectionId, s.version, c.state, s.expires_at AS expiresAt, s.obtained_at AS obtainedAt,
         s.refresh_token_issued_at AS refreshTokenIssuedAt
       FROM connections c JOIN token_sets s ON s.connection_id = c.id`,
    ),
    summaries: db.prepare(
      `SELECT c.id, c.xero_user_id, c.user_name, c.authorised_at, c.state, s.version, s.expires_at, s.refresh_token_issued_at,
         c.last_refresh_at, c.last_error
       FROM connections c JOIN token_sets s ON s.connection_id = c.id ORDER BY c.created_at, c.id`,
    ),
    allTenants: db.prepare(`SELECT * FROM tenants ORDER BY created_at, tenant_id`),
    activeTenants: db.prepare(`SELECT * FROM tenants WHERE connection_id = ? AND state = 'active'`),
    markTenantGone: db.prepare(
      `UPDATE tenants SET state = 'gone', gone_at = @now WHERE connection_id = @connection_id AND tenant_id = @tenant_id`,
    ),
    deleteTenant: db.prepare(`DELETE FROM tenants WHERE connection_id = ? AND tenant_id = ?`),
    deleteConnection: db.prepare(`DELETE FROM connections WHERE id = ?`),
    insertAuthorisation: db.prepare(
      `INSERT INTO oauth_states (state, code_verifier, browser_hash, created_at, expires_at)
       VALUES (@state, @code_verifier, @browser_hash, @created_at, @expires_at)`,
    ),
    forgetAuthorisations: db.prepare(`DELETE FROM oauth_states WHERE expires_at < ?`),
    authorisation: db.prepare(`SELECT * FROM oauth_states WHERE state = ?`),
    claimAuthorisation: db.prepare(
      `UPDATE oauth_states SET browser_hash = @browser
       WHERE browser_hash = @link AND used_at IS NULL AND expires_at > @now
       RETURNING state, code_verifier, expires_at`,
    ),
    useAuthorisation: db.prepare(`UPDATE oauth_states SET used_at = @now WHERE state = @state AND used_at IS NULL`),
    finishAuthorisation: db.prepare(
      `UPDATE oauth_states SET connection_id = @connection_id, error = @error WHERE state = @state`,
    ),
    ping: db.prepare(`SELECT 1 FROM connections LIMIT 1`),
  };
}

function tokenParams(connectionId: string, t: NewTokenSet, version: number) {
  return {
    connection_id: connectionId,
    access_token: t.accessToken,
    refresh_token: t.refreshToken,
    id_token: t.idToken ?? null,
    token_type: t.tokenType,
    scope: t.scopes.join(" "),
    expires_at: t.expiresAt,
    obtained_at: t.obtainedAt,
    refresh_token_issued_at: t.refreshTokenIssuedAt,
    version,
  };
}

function toRecord(row: TokenRow): TokenRecord {
  return {
    connectionId: row.connection_id,
    accessToken: row.access_token,
    refreshToken: row.refresh_token,
    idToken: row.id_token ?? undefined,
    tokenType: row.token_type,
    scopes: row.scope === "" ? [] : row.scope.split(" "),
    expiresAt: row.expires_at,
    obtainedAt: row.obtained_at,
    refreshTokenIssuedAt: row.refresh_token_issued_at,
    version: row.version,
    state: row.state,
    tenantIds: row.tenant_ids ? row.tenant_ids.split("\u001f") : [],
  };
}

/** The consent's browser is the one asking: a real browser hash (not a link's, not none), compared in constant time. */
function sameBrowser(stored: string | null, asking: string | undefined): boolean {
  if (stored === null || asking === undefined || stored.startsWith(LINK_PREFIX)) return false;
  const a = Buffer.from(stored);
  const b = Buffer.from(asking);
  return a.length === b.length && timingSafeEqual(a, b);
}

interface AuthorisationRow {
  state: string;
  code_verifier: string;
  browser_hash: string | null;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  connection_id: string | null;
  error: string | null;
}

function toTenantSummary(row: TenantRow): TenantSummary {
  return { ...toTenant(row), state: row.state, goneAt: row.gone_at ?? undefined };
}

function toTenant(row: TenantRow): Tenant {
  return {
    tenantId: row.tenant_id,
    xeroConnectionId: row.xero_connection_id ?? undefined,
    tenantName: row.tenant_name ?? undefined,
    tenantType: row.tenant_type ?? undefined,
    authEventId: row.auth_event_id ?? undefined,
  };
}

/** `record` and its arrays made read-only (a TokenRecord shared by every reader of the read cache). */
function freezeRecord(record: TokenRecord): TokenRecord {
  Object.freeze(record.scopes);
  Object.freeze(record.tenantIds);
  return Object.freeze(record);
}
