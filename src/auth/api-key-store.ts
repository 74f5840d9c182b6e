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
  /** Records that the key was used at `at` (ms). */
  markUsed(keyHash: string, at: number): Promise<void>;
}
