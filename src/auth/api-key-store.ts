/** A client API key as stored: its hash, never the key. */
export interface ApiKeyRecord {
  name: string;
  /** Hex SHA-256 of the key. */
  keyHash: string;
  /** `"*"` or the tenant ids the key may name. */
  tenants: "*" | string[];
  role: "client" | "admin";
  createdAt: number;
  lastUsedAt: number | undefined;
  revokedAt: number | undefined;
}

/** Where API keys live; what the request path needs (the admin commands use the SQLite implementation directly). */
export interface ApiKeyStore {
  /** The key with this hash, if it exists and is not revoked. */
  findActive(keyHash: string): Promise<ApiKeyRecord | undefined>;
  /**
   * Whether the key exists and is not revoked, read now (no cache) and at
   * once: what an open WatchToken stream is checked with before each token
   * is pushed to it, so it must be cheap (one indexed read).
   */
  isActive(keyHash: string): boolean;
  /** Records that the key was used at `at` (ms). */
  markUsed(keyHash: string, at: number): Promise<void>;
}
