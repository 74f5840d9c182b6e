import pg from "pg";
import { systemClock, type Clock } from "../clock.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import { silentLogger, type Logger } from "../logger.js";
import { postgresMigrations } from "./postgres-migrations.js";
import { ChangeListener } from "./postgres-change-listener.js";
import { isUnreachable, PostgresReadCache } from "./postgres-read-cache.js";
import { withoutPassword } from "./store-location.js";
import { StoreUnavailableError, type StoreOptions } from "./store.js";

/** Options for {@link PostgresDatabase.open}: {@link StoreOptions} and the URL. */
export interface PostgresStoreOptions extends StoreOptions {
  /** `postgres://user:password@host:port/database?…`, as libpq takes it. */
  url: string;
  /**
   * How its sessions are named in `pg_stat_activity` (default `tokenbroker`,
   * which is how `tokenbroker migrate` tells that a broker uses a database).
   */
  applicationName?: string;
}

/** Something to run a statement on: the database, or one client inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** The channel every broker sharing a database listens on; a payload is `kind:version:connection id`, never a token. */
const CHANNEL = "tokenbroker_changes";

/** The `application_name` of a broker's (and a command's) sessions. */
export const BROKER_APPLICATION_NAME = "tokenbroker";

/** Taken (for the transaction) while migrating, so brokers starting together migrate one after the other. */
const MIGRATION_LOCK = 7_164_220_315_042_013n;

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
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as "text")) as pg.CustomTypesConfig["getTypeParser"],
};

/**
 * A tokenbroker PostgreSQL database: the pool every PostgreSQL part of a
 * store shares, with what they share: the read cache, the cipher, the
 * clock, transactions, migrations, and the one connection that LISTENs for
 * every broker's commits (`ChangeListener`). Internal to `src/store`.
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
  private readonly subscribers = new Set<(change: DatabaseChange) => void>();
  private readonly listener: ChangeListener;
  private closed = false;

  private constructor(options: PostgresStoreOptions) {
    this.clock = options.clock ?? systemClock;
    this.cipher = options.encryption;
    this.logger = options.logger ?? silentLogger;
    this.reads = new PostgresReadCache(() => this.cipher?.keyIds.join(" ") ?? "");
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.config = {
      connectionString: options.url,
      application_name: options.applicationName ?? BROKER_APPLICATION_NAME,
      connectionTimeoutMillis: connectTimeoutMs,
      // A server gone silent (a network cut without a reset) fails a query after this, instead of never.
      query_timeout: options.queryTimeoutMs ?? 10_000,
      keepAlive: true,
      types,
    };
    this.pool = new pg.Pool({ ...this.config, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000 });
    // An idle connection that the server ended (a restart, a failover): the pool drops it and opens another when needed.
    this.pool.on("error", (e) =>
      this.logger.warn({ event: "database_connection_lost", error: this.safeMessage(e) }, "a database connection was lost"),
    );
    this.listener = new ChangeListener({
      config: this.config,
      channel: CHANNEL,
      heartbeatMs: connectTimeoutMs,
      logger: this.logger,
      describe: (e) => this.safeMessage(e),
      onPayload: (payload) => this.onPayload(payload),
      // From then on the cache remembers, and everything counts as changed.
      onUp: () => {
        this.reads.resume();
        this.hear({ kind: "everything" });
      },
      onDown: () => this.reads.suspend(),
    });
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
      await db.listener.start();
      return db;
    } catch (e) {
      await db.close();
      throw db.safeError(e);
    }
  }

  /** Subscribes to changes (see {@link DatabaseChange}) until the returned function is called. */
  onChange(listener: (change: DatabaseChange) => void): () => void {
    this.subscribers.add(listener);
    return () => this.subscribers.delete(listener);
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
    await this.listener.close();
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
    return new StoreUnavailableError(this.closed ? "the store is closed" : `the database cannot be reached (${safe.message})`, {
      cause: safe,
    });
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
    for (const listener of this.subscribers) {
      try {
        listener(change);
      } catch (e) {
        this.logger.error(
          { event: "change_listener_failed", error: e instanceof Error ? e.message : String(e) },
          "a store change listener threw",
        );
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

  private onPayload(payload: string): void {
    const [kind, version, ...id] = payload.split(":");
    const connectionId = id.join(":");
    if (kind === "k") this.hear({ kind: "keys" });
    else if ((kind === "t" || kind === "c") && connectionId !== "") {
      this.hear({ kind: kind === "t" ? "token" : "connection", connectionId, version: Number(version) });
    }
  }

  /** Whether {@link close} was called. */
  get isClosed(): boolean {
    return this.closed;
  }
}
