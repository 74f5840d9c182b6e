import type Database from "better-sqlite3";

/**
 * Remembers the answers of a store's hot reads (the tenant lookup and the
 * token set behind every cached GetToken) for as long as the database has not
 * changed. Each read first asks SQLite, in one cheap statement, whether
 * anything was committed since: by another connection or process
 * (`PRAGMA data_version`) or by this connection (`total_changes()`), or
 * whether `context()` changed (e.g. the encryption keyring was re-read); if
 * so, everything is forgotten. Inside a transaction it neither answers nor
 * remembers, so uncommitted data is never kept.
 *
 * `npm run bench` found the two indexed reads of a cached GetToken to be the
 * broker's largest cost per request; the check costs a fraction of them.
 */
export class ReadCache {
  private readonly probe: Database.Statement;
  private dataVersion = -1;
  private changes = -1;
  private seenContext: string | undefined;
  private readonly maps = new Map<string, Map<string, unknown>>();

  /** `context`: anything else the remembered answers depend on; they are forgotten when it changes. */
  constructor(
    private readonly db: Database.Database,
    private readonly context: () => string = () => "",
  ) {
    this.probe = db.prepare("SELECT data_version, total_changes() FROM pragma_data_version").raw();
  }

  /**
   * The remembered answer for `key` in `space`, or `read()`'s answer,
   * remembered unless it is `undefined` (so unknown keys, whoever sends them,
   * take no memory). The same value is returned to every caller: copy what a
   * caller may change.
   */
  get<T>(space: string, key: string, read: () => T): T {
    if (this.db.inTransaction) return read();
    const [dataVersion, changes] = this.probe.get() as [number, number];
    const context = this.context();
    if (dataVersion !== this.dataVersion || changes !== this.changes || context !== this.seenContext) {
      this.maps.clear();
      this.dataVersion = dataVersion;
      this.changes = changes;
      this.seenContext = context;
    }
    let map = this.maps.get(space);
    if (!map) this.maps.set(space, (map = new Map()));
    const known = map.get(key) as T | undefined;
    if (known !== undefined) return known;
    const value = read();
    if (value !== undefined) map.set(key, value);
    return value;
  }
}
