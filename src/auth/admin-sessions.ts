import { randomBytes } from "node:crypto";

/** Options for {@link createAdminSessions}. */
export interface AdminSessionsOptions {
  /** How long a session lasts after login, ms (default 8 hours). */
  ttlMs?: number;
  /** Sessions held at most; the oldest is dropped beyond (default 1000). */
  maxSessions?: number;
  now?: () => number;
}

/** Browser sessions of the status page, held in memory (a restart asks for the key again). */
export interface AdminSessions {
  /** Opens a session for a key; returns the random session id for the cookie. */
  open(keyHash: string): string;
  /** The key hash behind a live session id, or undefined. */
  get(sessionId: string): string | undefined;
  /** Ends a session. */
  close(sessionId: string): void;
  /** Seconds a new session lives (the cookie's Max-Age). */
  readonly maxAgeSeconds: number;
}

/** An in-memory session table: ids are 32 random bytes, sessions expire after `ttlMs`. */
export function createAdminSessions(options: AdminSessionsOptions = {}): AdminSessions {
  const ttl = options.ttlMs ?? 8 * 3600_000;
  const max = options.maxSessions ?? 1000;
  const now = options.now ?? Date.now;
  const sessions = new Map<string, { keyHash: string; until: number }>();
  return {
    open(keyHash) {
      const id = randomBytes(32).toString("base64url");
      if (sessions.size >= max) sessions.delete(sessions.keys().next().value!);
      sessions.set(id, { keyHash, until: now() + ttl });
      return id;
    },
    get(id) {
      const s = sessions.get(id);
      if (!s) return undefined;
      if (s.until <= now()) {
        sessions.delete(id);
        return undefined;
      }
      return s.keyHash;
    },
    close(id) {
      sessions.delete(id);
    },
    maxAgeSeconds: Math.floor(ttl / 1000),
  };
}
