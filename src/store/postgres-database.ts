import pg from "pg";
import { systemClock, type Clock } from "../clock.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import { silentLogger, type Logger } from "../logger.js";
import { postgresMigrations } from "./postgres-migrations.js";
import { isUnreachable, PostgresReadCache } from "./postgres-read-cache.js";
import { withoutPassword } from "./store-location.js";
import { StoreUnavailableError, type StoreOptions } from "./store.js";

/** Options for {@link PostgresDatabase.open}: {@link StoreOptions} and the URL. */
export interface PostgresStoreOptions extends StoreOptions {
  /** `postgres://user:password@host:port/database?…`, as libpq takes it. */
  url: string;
}

/** Something to run a statement on: the database, or one client inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** The channel every broker sharing a database listens on; a payload is `kind:version:connection id`, never a token. */
const CHANNEL = "tokenbroker_changes";

/** Taken (for the transaction) while migrating, so brokers starting together migrate one after the other. */
const MIGRATION_LOCK = 7_164_220_315_042_013n;

/** Waits before listening again after the listening connection dropped, ms: doubling up to the last. */
const RELISTEN_DELAYS_MS = [50, 100, 250, 500, 1000, 2000];

/**
 * What a broker hears about: a change to one connection's token set (`token`)
 * or to the connection itself, its state or tenants (`connection`); API keys
 * created or revoked (`keys`); or `everything`, after the listening
 * connection came back from a drop.
 */
export type DatabaseChange =
  | { kind: "token" | "connection"; connectionId: string; version: number }
  | { kind: "keys" }
  | { kind: "everything" };

/** Integers of 64 bits (`bigint`: timestamps in ms, versions) as numbers: all fit in 2^53. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as "text")) as pg.CustomTypesConfig["getTypeParser"],
};

/**
 * A tokenbroker PostgreSQL database: the pool every PostgreSQL part of a
 * store shares, with what they share: the read cache, the cipher, the
 * clock, transactions, and the one connection that LISTENs for every
 * broker's commits. Internal to `src/store`.
 *
 * A commit that changes a token set, a connection or its tenants, or an API
 * key sends a NOTIFY in its transaction (delivered only if it commits) with
 * the connection id and version, never a token; each broker forgets what it
 * remembered of that connection and tells its subscribers. When the
 * listening connection drops, it is opened again with backoff, and then
 * everything counts as changed.
 */
export class PostgresDatabase {
  /** Time source for timestamps and lease expiry. */
  readonly clock: Clock;
  /** Seals the secret columns of token sets; undefined: clear text. */
  readonly cipher: TokenCipher | undefined;
  /** Hears of refused token sets and of the listening connection's drops (never a token, never the password). */
  readonly logger: Logger;
  /** The hot reads of a cached GetToken, remembered until a change is heard. */
  readonly reads: PostgresReadCache;
  /** The pool: only {@link query} and {@link transaction} use it. */
  private readonly pool: pg.Pool;
  private readonly config: pg.ClientConfig;
  private readonly listeners = new Set<(change: DatabaseChange) => void>();
  private listener: pg.Client | undefined;
  private relistenTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** How often the listening connection is checked, and how long its answer may take, ms (the connect timeout). */
  private readonly heartbeatMs: number;
  private relistenAttempt = 0;
  private closed = false;

  private constructor(options: PostgresStoreOptions) {
    this.clock = options.clock ?? systemClock;
    this.cipher = options.encryption;
    this.logger = options.logger ?? silentLogger;
    this.reads = new PostgresReadCache(() => this.cipher?.keyIds.join(" ") ?? "");
    this.heartbeatMs = options.connectTimeoutMs ?? 5000;
    this.config = {
      connectionString: options.url,
      application_name: "tokenbroker",
      connectionTimeoutMillis: this.heartbeatMs,
      // A server gone silent (a network cut without a reset) fails a query after this, instead of never.
      query_timeout: options.queryTimeoutMs ?? 10_000,
      keepAlive: true,
      types,
    };
    this.pool = new pg.Pool({ ...this.config, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000 });
    // An idle connection that the server ended (a restart, a failover): the pool drops it and opens another when needed.
    this.pool.on("error", (e) => this.logger.warn({ event: "database_connection_lost", error: this.safeMessage(e) }, "a database connection was lost"));
  }

  /**
   * Connects, migrates (under an advisory lock, so several brokers may start
   * at once) and starts listening for changes. Errors never show the URL's
   * password.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresDatabase> {
    const db = new PostgresDatabase(options);
    try {
      await db.migrate();
      await db.listen();
      return db;
    } catch (e) {
      await db.close();
      throw db.safeError(e);
    }
  }

  /** Subscribes to changes (see {@link DatabaseChange}) until the returned function is called. */
  onChange(listener: (change: DatabaseChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Runs one statement on a client of the pool; a database that cannot be
   * reached is a {@link StoreUnavailableError}.
   */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values);
    } catch (e) {
      throw this.storeError(e);
    }
  }

  /**
   * Runs `body` in a transaction on one client of the pool. `changes` are
   * sent as notifications in the same transaction (so they are heard only
   * if it commits, and always if it does), and heard by this process at once
   * after the commit, before this returns.
   */
  async transaction<T>(body: (client: Queryable, notify: (change: DatabaseChange) => void) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw this.storeError(e);
    }
    const changes: DatabaseChange[] = [];
    let broken: Error | undefined;
    try {
      await client.query("BEGIN");
      const result = await body(client, (c) => changes.push(c));
      for (const c of changes) await this.sendNotification(client, c);
      await client.query("COMMIT");
      return result;
    } catch (e) {
      await client.query("ROLLBACK").catch((rollback: Error) => (broken = rollback));
      throw this.storeError(e);
    } finally {
      client.release(broken);
      // Also when the commit failed: forgetting too much costs only a read.
      for (const c of changes) this.hear(c);
    }
  }

  /** Reads the schema and a page of a real table; throws when the database cannot be reached or the store is closed. */
  async ping(): Promise<void> {
    await this.query("SELECT 1 FROM connections LIMIT 1");
  }

  /** Stops listening and closes every connection (once; later queries fail). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.relistenTimer);
    clearInterval(this.heartbeatTimer);
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => {});
    await this.pool.end().catch(() => {});
  }

  /** An error whose message and stack hold no password of the URL. */
  safeError(e: unknown): Error {
    const message = this.safeMessage(e);
    const safe = new Error(message);
    if (e instanceof Error) {
      safe.name = e.name;
      const code = (e as { code?: unknown }).code;
      if (code !== undefined) Object.assign(safe, { code });
    }
    return safe;
  }

  /** `e` as a {@link StoreUnavailableError} when it says the database cannot be reached (or the store is closed); else `e`. */
  private storeError(e: unknown): unknown {
    if (e instanceof StoreUnavailableError || !(isUnreachable(e) || this.closed)) return e;
    const safe = this.safeError(e);
    return new StoreUnavailableError(this.closed ? "the store is closed" : `the database cannot be reached (${safe.message})`, { cause: safe });
  }

  private safeMessage(e: unknown): string {
    return withoutPassword(e instanceof Error ? e.message : String(e), this.config.connectionString ?? "");
  }

  private async sendNotification(client: Queryable, change: DatabaseChange): Promise<void> {
    if (change.kind === "token" || change.kind === "connection") {
      // The version as this transaction leaves it (0 once the connection is gone), also for this process's own hearing.
      const { rows } = await client.query<{ version: number }>(
        `WITH v AS (SELECT coalesce((SELECT version FROM token_sets WHERE connection_id = $3), 0) AS version)
         SELECT pg_notify($1, $2 || ':' || v.version || ':' || $3), v.version FROM v`,
        [CHANNEL, change.kind[0], change.connectionId],
      );
      change.version = rows[0]!.version;
    } else {
      await client.query(`SELECT pg_notify($1, $2)`, [CHANNEL, change.kind[0]]);
    }
  }

  /** A change heard (from the listening connection or a commit of this process): the cache forgets, subscribers are told. */
  private hear(change: DatabaseChange): void {
    if (change.kind === "token") this.reads.changed([["token", change.connectionId]]);
    else if (change.kind === "connection") this.reads.changed([["token", change.connectionId], ["tenant"]]);
    else if (change.kind === "everything") this.reads.forgetAll();
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (e) {
        this.logger.error({ event: "change_listener_failed", error: e instanceof Error ? e.message : String(e) }, "a store change listener threw");
      }
    }
  }

  private async migrate(): Promise<void> {
    await this.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK.toString()]);
      await client.query(`CREATE TABLE IF NOT EXISTS tokenbroker_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)`);
      const { rows } = await client.query<{ v: number }>(`SELECT coalesce(max(version), 0) AS v FROM tokenbroker_migrations`);
      const current = rows[0]!.v;
      if (current > postgresMigrations.length) {
        throw new Error(
          `database schema version ${current} is newer than this tokenbroker supports (${postgresMigrations.length}); upgrade tokenbroker`,
        );
      }
      for (let v = current; v < postgresMigrations.length; v++) {
        await client.query(postgresMigrations[v]!);
        await client.query(`INSERT INTO tokenbroker_migrations (version, applied_at) VALUES ($1, $2)`, [v + 1, this.clock.now()]);
      }
    });
  }

  /** Opens the listening connection; from then on the cache remembers, and everything counts as changed. */
  private async listen(): Promise<void> {
    const client = new pg.Client(this.config);
    const lost = (e?: Error) => this.lost(client, e);
    client.on("error", lost);
    client.on("end", () => lost());
    client.on("notification", (n) => {
      if (n.channel === CHANNEL && n.payload !== undefined) this.onNotification(n.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (e) {
      client.removeAllListeners("end");
      await client.end().catch(() => {});
      throw e;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.listener = client;
    this.relistenAttempt = 0;
    this.heartbeat(client);
    this.reads.resume();
    this.hear({ kind: "everything" });
  }

  /**
   * Checks the listening connection every {@link heartbeatMs}: one that stops answering (a peer gone silent,
   * which TCP alone notices only after minutes) counts as lost within twice that.
   */
  private heartbeat(client: pg.Client): void {
    clearInterval(this.heartbeatTimer);
    let pending = false;
    this.heartbeatTimer = setInterval(() => {
      if (this.listener !== client) return;
      if (pending) {
        this.lost(client, new Error(`no answer from the database in ${this.heartbeatMs} ms`));
        return;
      }
      pending = true;
      client.query("SELECT 1").then(
        () => (pending = false),
        (e: Error) => this.lost(client, e),
      );
    }, this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  private onNotification(payload: string): void {
    const [kind, version, ...id] = payload.split(":");
    const connectionId = id.join(":");
    if (kind === "k") this.hear({ kind: "keys" });
    else if ((kind === "t" || kind === "c") && connectionId !== "") {
      this.hear({ kind: kind === "t" ? "token" : "connection", connectionId, version: Number(version) });
    }
  }

  /** The listening connection dropped: read through to the database, and listen again with backoff. */
  private lost(client: pg.Client, e?: Error): void {
    if (this.listener !== client) return;
    this.listener = undefined;
    clearInterval(this.heartbeatTimer);
    this.reads.suspend();
    client.end().catch(() => {});
    if (this.closed) return;
    this.logger.warn(
      { event: "database_listen_lost", ...(e ? { error: this.safeMessage(e) } : {}) },
      "lost the connection that hears other brokers' changes: reading through to the database until it is back",
    );
    this.relisten();
  }

  private relisten(): void {
    const delay = RELISTEN_DELAYS_MS[Math.min(this.relistenAttempt++, RELISTEN_DELAYS_MS.length - 1)]!;
    this.relistenTimer = setTimeout(() => {
      this.listen().then(
        () => this.logger.info({ event: "database_listen_back" }, "hearing other brokers' changes again"),
        () => {
          if (!this.closed) this.relisten();
        },
      );
    }, delay);
    this.relistenTimer.unref();
  }

  /** Whether {@link close} was called. */
  get isClosed(): boolean {
    return this.closed;
  }
}
