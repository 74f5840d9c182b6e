import { renameSync, rmSync } from "node:fs";
import Database from "better-sqlite3";
import { systemClock, type Clock } from "../clock.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import { silentLogger, type Logger } from "../logger.js";
import { createPrivateFile, octalMode, tightenFileModes } from "../private-files.js";
import { migrations } from "./migrations.js";
import { ReadCache } from "./read-cache.js";
import type { StoreOptions } from "./store.js";

/** Options for {@link SqliteDatabase}: {@link StoreOptions} and the file. */
export interface SqliteStoreOptions extends StoreOptions {
  /** Path of the database file; created if missing. */
  path: string;
  /**
   * `"off"` skips the fsync of each commit: only for filling a throwaway
   * database (the bench's seed), never for one that holds real tokens.
   * Default `"full"`: a committed token set survives a power cut.
   */
  synchronous?: "full" | "off";
  /**
   * Holds the file for this connection alone until it closes (SQLite's
   * `locking_mode=EXCLUSIVE` and a write lock taken at once): opening fails
   * with `SQLITE_BUSY` while another process has the file open (a broker
   * serving it), and no other process can read or write it meanwhile. For
   * `tokenbroker migrate`, which copies the file; never for a broker.
   */
  exclusive?: boolean;
}

/**
 * The one connection to a tokenbroker SQLite database that every SQLite part
 * of a store shares, with what they share: the read cache, the cipher, the
 * clock and the transaction helper. Internal to `src/store`.
 *
 * WAL mode with `synchronous=FULL`: a committed token set survives a crash or
 * a power cut. Several processes may share the file; refresh leases in the
 * database keep them from refreshing one token set twice.
 *
 * The database is created with mode 0600 whatever the umask (SQLite gives its
 * WAL and shared-memory files the same mode); an existing one that group or
 * others can read is made 0600, with a warning in the log.
 */
export class SqliteDatabase {
  /** The connection: never handed outside `src/store`. */
  readonly db: Database.Database;
  /** Time source for timestamps and lease expiry. */
  readonly clock: Clock;
  /** Seals the secret columns of token sets; undefined: clear text. */
  readonly cipher: TokenCipher | undefined;
  /** Hears of refused token sets and files made private (never a token). */
  readonly logger: Logger;
  /** The hot reads of a cached GetToken, remembered until the database changes. */
  readonly reads: ReadCache;
  private readonly pingStatement: Database.Statement;

  constructor(options: SqliteStoreOptions) {
    this.clock = options.clock ?? systemClock;
    this.cipher = options.encryption;
    this.logger = options.logger ?? silentLogger;
    // A path SQLite cannot create either (no such directory) is left to SQLite, to fail with its own message.
    const created = isFile(options.path) && tryCreatePrivateFile(options.path);
    this.db = new Database(options.path);
    try {
      this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
      if (options.exclusive) holdExclusively(this.db);
      checkSchemaVersion(this.db);
      if (isFile(options.path) && !created) tightenDatabaseFiles(options.path, this.logger);
      this.db.pragma("journal_mode = WAL");
      this.db.pragma(options.synchronous === "off" ? "synchronous = OFF" : "synchronous = FULL");
      this.db.pragma("foreign_keys = ON");
      migrate(this.db);
      this.pingStatement = this.db.prepare(`SELECT 1 FROM connections LIMIT 1`);
      // Tokens read under one keyring are forgotten when the keyring changes (a re-read key file).
      this.reads = new ReadCache(this.db, () => this.cipher?.keyIds.join(" ") ?? "", options.readCacheCheckMs);
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  /**
   * Runs a write of connections, tenants or token sets in a transaction; the
   * read cache forgets what it remembered. The transaction is IMMEDIATE: it
   * waits for the write lock first (busy_timeout), so a read inside it cannot
   * be overtaken by another process's commit and fail with SQLITE_BUSY when
   * it turns into a write, as a deferred one can in WAL mode.
   */
  write<T>(body: () => T): T {
    try {
      return this.db.transaction(body).immediate();
    } finally {
      this.reads.forget();
    }
  }

  /** Reads the schema and a page of a real table, not just `SELECT 1`; throws once the database is closed. */
  ping(): void {
    this.pingStatement.get();
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

  /** Closes the connection (once; later calls do nothing). */
  close(): void {
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

/**
 * Takes the file's locks for this connection until it closes. In WAL mode
 * every open connection keeps a shared lock, even idle, so this fails
 * (`SQLITE_BUSY`, after the busy timeout) while any other process has the
 * file open; the locks of a process that died go with it.
 */
function holdExclusively(db: Database.Database): void {
  db.pragma("locking_mode = EXCLUSIVE");
  db.exec("BEGIN EXCLUSIVE");
  db.exec("COMMIT");
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
