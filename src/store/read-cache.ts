import type Database from "better-sqlite3";

/** How long one look at `PRAGMA data_version` stands for, ms. */
export const CHECK_EVERY_MS = 5;

/**
 * Remembers the answers of a store's hot reads (the tenant lookup and the
 * token set behind every cached GetToken) for as long as the database has not
 * changed. It asks SQLite, in one cheap statement (`PRAGMA data_version`),
 * whether another connection or process committed anything since it last
 * looked; if so, or if `context()` changed (e.g. the encryption keyring was
 * re-read), everything is forgotten. It asks at most once every
 * {@link CHECK_EVERY_MS} (the requests of a burst share one check): another
 * process's commit is seen within that time, as if it had come that much
 * later. The store calls {@link forget} after each of its own writes of what
 * is remembered (and after taking a refresh lease), so those are seen at
 * once, and writes of anything else through the same connection (the audit
 * log, API keys) do not empty the cache.
 * Inside a transaction it neither answers nor remembers, so uncommitted data
 * is never kept.
 *
 * `npm run bench` found the two indexed reads of a cached GetToken to be the
 * broker's largest cost per request, and then the check before each read.
 */
export class ReadCache {
  private readonly probe: Database.Statement;
  private dataVersion = -1;
  private seenContext: string | undefined;
  private readonly maps = new Map<string, Map<string, unknown>>();
  /** When SQLite was last asked (`performance.now()`), or -Infinity. */
  private checkedAt = Number.NEGATIVE_INFINITY;

  /**
   * `context`: anything else the remembered answers depend on; they are
   * forgotten when it changes. `checkEveryMs`: how long one look at the
   * database stands for (default {@link CHECK_EVERY_MS}).
   */
  constructor(
    private readonly db: Database.Database,
    private readonly context: () => string = () => "",
    private readonly checkEveryMs = CHECK_EVERY_MS,
  ) {
    this.probe = db.prepare("SELECT data_version FROM pragma_data_version").pluck();
  }

  /**
   * The remembered answer for `key` in `space`, or `read()`'s answer,
   * remembered unless it is `undefined` (so unknown keys, whoever sends them,
   * take no memory). The same value is returned to every caller: copy what a
   * caller may change.
   */
  get<T>(space: string, key: string, read: () => T): T {
    if (this.db.inTransaction) return read();
    const now = performance.now();
    if (now - this.checkedAt >= this.checkEveryMs) {
      this.checkedAt = now;
      const dataVersion = this.probe.get() as number;
      if (dataVersion !== this.dataVersion) {
        this.maps.clear();
        this.dataVersion = dataVersion;
      }
    }
    const context = this.context();
    if (context !== this.seenContext) {
      this.maps.clear();
      this.seenContext = context;
    }
    let map = this.maps.get(space);
    if (!map) {
      map = new Map();
      this.maps.set(space, map);
    }
    const known = map.get(key) as T | undefined;
    if (known !== undefined) return known;
    const value = read();
    if (value !== undefined) map.set(key, value);
    return value;
  }

  /** Forgets everything and asks SQLite again at the next read: the store wrote. */
  forget(): void {
    this.maps.clear();
    this.checkedAt = Number.NEGATIVE_INFINITY;
  }
}
