import { migration3Security } from "./migration-3-security.js";
import { migration4Quota } from "./migration-4-quota.js";
import { migration5CustomConnections } from "./migration-5-custom-connections.js";
import { migration6TenantChecks } from "./migration-6-tenant-checks.js";

/**
 * Schema migrations, applied in order. The database's `user_version` records
 * how many have run; a migration is never edited once released, only added.
 */
export const migrations: readonly string[] = [
  // 1: connections, their tenants, token sets and refresh leases.
  `
  CREATE TABLE connections (
    id              TEXT PRIMARY KEY,
    xero_user_id    TEXT UNIQUE,
    state           TEXT NOT NULL DEFAULT 'active'
                    CHECK (state IN ('active', 'needs_reauthorization')),
    created_at      INTEGER NOT NULL,
    authorised_at   INTEGER NOT NULL,
    last_refresh_at INTEGER,
    last_error      TEXT
  ) STRICT;

  CREATE TABLE token_sets (
    connection_id           TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    access_token            TEXT NOT NULL,
    refresh_token           TEXT NOT NULL,
    id_token                TEXT,
    token_type              TEXT NOT NULL,
    scope                   TEXT NOT NULL,
    expires_at              INTEGER NOT NULL,
    obtained_at             INTEGER NOT NULL,
    refresh_token_issued_at INTEGER NOT NULL,
    version                 INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE tenants (
    connection_id      TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tenant_id          TEXT NOT NULL,
    xero_connection_id TEXT,
    tenant_name        TEXT,
    tenant_type        TEXT,
    auth_event_id      TEXT,
    created_at         INTEGER NOT NULL,
    PRIMARY KEY (connection_id, tenant_id)
  ) STRICT;
  CREATE INDEX tenants_by_tenant_id ON tenants(tenant_id);

  CREATE TABLE refresh_leases (
    connection_id TEXT PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    holder        TEXT NOT NULL,
    acquired_at   INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
  ) STRICT;
  `,
  // 2: the consent flow: tenants that vanished from Xero's list, the user's
  // name for the status page, and pending authorisations (state + PKCE verifier).
  `
  ALTER TABLE tenants ADD COLUMN state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'gone'));
  ALTER TABLE tenants ADD COLUMN gone_at INTEGER;
  ALTER TABLE connections ADD COLUMN user_name TEXT;

  CREATE TABLE oauth_states (
    state          TEXT PRIMARY KEY,
    code_verifier  TEXT NOT NULL,
    browser_hash   TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    connection_id  TEXT,
    error          TEXT
  ) STRICT;
  `,
  // 3: client API keys, the audit log, and each token set's encryption key id.
  migration3Security,
  // 4: Xero's call limits shared by every broker on the file: slots, counts, holds.
  migration4Quota,
  // 5: custom connections: their name and client id (the client secret is the token set's sealed refresh_token).
  migration5CustomConnections,
  // 6: when each connection's organisations were last re-read from Xero, and each tenant last listed.
  migration6TenantChecks,
];
