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

/** A new key to store (hashed by the caller). */
export interface NewApiKey {
  name: string;
  keyHash: string;
  tenants: "*" | string[];
  role: "client" | "admin";
  createdAt: number;
}

/** An active key of that name exists already. */
export class DuplicateKeyNameError extends Error {
  override readonly name = "DuplicateKeyNameError";
}

/** The client API keys: what the request path checks, and what `tokenbroker keys` manages. */
export interface ApiKeyStore {
  /** The key with this hash, if it exists and is not revoked. */
  findActive(keyHash: string): Promise<ApiKeyRecord | undefined>;
  /**
   * Whether the key exists and is not revoked, read now and at once: what an
   * open WatchToken stream is checked with before each token is pushed to
   * it, so it must be cheap and synchronous (SQLite: one indexed read; a
   * networked store answers from memory it keeps current).
   */
  isActive(keyHash: string): boolean;
  /** Records that the key was used at `at` (ms). */
  markUsed(keyHash: string, at: number): Promise<void>;
  /** Stores a new key; {@link DuplicateKeyNameError} if an active key has that name. */
  create(key: NewApiKey): Promise<void>;
  /** Every key, active and revoked, oldest first. */
  list(): Promise<ApiKeyRecord[]>;
  /** Revokes the active key of that name; false if there is none. */
  revoke(name: string, at: number): Promise<boolean>;
}
