import { StoreUnavailableError } from "./store.js";

/**
 * Remembers the answers of the PostgreSQL store's hot reads (the tenant
 * lookup and the token set behind every cached GetToken) for as long as
 * nothing says they changed: the store's listening connection hears every
 * commit of every broker (LISTEN/NOTIFY) and calls {@link changed}, and the
 * store's own writes call it too, at once. A cached GetToken then never
 * reaches the database.
 *
 * While the listening connection is down ({@link suspend}), changes cannot be
 * heard: every read goes to the database, and only when the database cannot
 * be reached either is the last answer remembered served (a token that was
 * valid stays valid through an outage; nothing is refreshed without the
 * database's lease). When the listening connection is back ({@link resume}),
 * everything is forgotten and read again.
 *
 * A read that was under way when a change was heard is not remembered (it
 * may predate the change).
 */
export class PostgresReadCache {
  private readonly maps = new Map<string, Map<string, unknown>>();
  /** Grows with every change heard: a read that saw it grow is not remembered. */
  private generation = 0;
  private listening = false;
  private seenContext: string | undefined;

  /** `context`: anything else the remembered answers depend on (the encryption keyring); they are forgotten when it changes. */
  constructor(private readonly context: () => string = () => "") {}

  /**
   * The remembered answer for `key` in `space`, or `read()`'s answer,
   * remembered unless it is `undefined`. The same value is returned to every
   * caller: copy what a caller may change.
   */
  async get<T>(space: string, key: string, read: () => Promise<T>): Promise<T> {
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
    if (this.listening) {
      const known = map.get(key) as T | undefined;
      if (known !== undefined) return known;
    }
    const generation = this.generation;
    let value: T;
    try {
      value = await read();
    } catch (e) {
      const stale = map.get(key) as T | undefined;
      if (!this.listening && stale !== undefined && isUnreachable(e)) return stale;
      throw e;
    }
    if (generation === this.generation) {
      if (value === undefined) map.delete(key);
      else map.set(key, value);
    }
    return value;
  }

  /** Forgets `key` in each of `spaces`, or whole spaces given as `[space]` alone with `key` undefined. */
  changed(forget: Array<[space: string, key?: string]>): void {
    this.generation++;
    for (const [space, key] of forget) {
      if (key === undefined) this.maps.delete(space);
      else this.maps.get(space)?.delete(key);
    }
  }

  /** Forgets everything. */
  forgetAll(): void {
    this.generation++;
    this.maps.clear();
  }

  /** Changes can no longer be heard: read through to the database until {@link resume}. */
  suspend(): void {
    this.generation++;
    this.listening = false;
  }

  /** Changes are heard again: forget everything (anything may have changed meanwhile) and remember from now on. */
  resume(): void {
    this.forgetAll();
    this.listening = true;
  }
}

/** Whether `e` says the database could not be reached (rather than that it refused the query). */
export function isUnreachable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e instanceof StoreUnavailableError) return true;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string") {
    // SQLSTATE class 08 (connection exception), 57P0x (the server is shutting down or restarting), and Node's own.
    if (/^08|^57P0/.test(code) || /^E(CONNREFUSED|CONNRESET|TIMEDOUT|HOSTUNREACH|NETUNREACH|PIPE|AI_AGAIN|NOTFOUND)$/.test(code))
      return true;
  }
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout/i.test(
    e.message,
  );
}
