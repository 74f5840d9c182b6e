/**
 * Migration 3: client API keys, the audit log, and the key id of each token
 * set's encryption (derived from the sealed refresh token, so writers need
 * not set it: `NULL` while the row is plain text).
 */
export const migration3Security = `
  CREATE TABLE api_keys (
    key_hash     TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    tenants      TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('client', 'admin')),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
  ) STRICT;
  CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;

  CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    actor         TEXT,
    action        TEXT NOT NULL,
    tenant_id     TEXT,
    connection_id TEXT,
    outcome       TEXT NOT NULL,
    detail        TEXT
  ) STRICT;
  CREATE INDEX audit_log_by_time ON audit_log(at);

  ALTER TABLE token_sets ADD COLUMN key_id TEXT
    GENERATED ALWAYS AS (CASE WHEN substr(refresh_token, 1, 5) = 'tbx1:' THEN substr(refresh_token, 6, 8) END) VIRTUAL;
`;
