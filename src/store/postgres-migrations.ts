import { postgresMigration4TenantChecks } from "./migration-6-tenant-checks.js";

/**
 * The PostgreSQL schema's migrations, applied in order; the
 * `tokenbroker_migrations` table records which ran. A migration is never
 * edited once released, only added. The same tables and columns as the
 * SQLite schema (migrations.ts) at its latest version, with timestamps in
 * ms as `bigint`, identifiers compared bytewise (`COLLATE "C"`, as SQLite
 * does), and a fencing number on each refresh lease.
 */
export const postgresMigrations: readonly string[] = [
  // 1: everything, as SQLite's migrations 1 to 3 left it.
  `
  CREATE TABLE connections (
    id              text COLLATE "C" PRIMARY KEY,
    xero_user_id    text COLLATE "C" UNIQUE,
    user_name       text,
    state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'needs_reauthorization')),
    created_at      bigint NOT NULL,
    authorised_at   bigint NOT NULL,
    last_refresh_at bigint,
    last_error      text
  );

  CREATE TABLE token_sets (
    connection_id           text COLLATE "C" PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    access_token            text NOT NULL,
    refresh_token           text NOT NULL,
    id_token                text,
    token_type              text NOT NULL,
    scope                   text NOT NULL,
    expires_at              bigint NOT NULL,
    obtained_at             bigint NOT NULL,
    refresh_token_issued_at bigint NOT NULL,
    version                 bigint NOT NULL,
    key_id                  text GENERATED ALWAYS AS
                              (CASE WHEN left(refresh_token, 5) = 'tbx1:' THEN substr(refresh_token, 6, 8) END) STORED
  );

  CREATE TABLE tenants (
    connection_id      text COLLATE "C" NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    tenant_id          text COLLATE "C" NOT NULL,
    xero_connection_id text,
    tenant_name        text,
    tenant_type        text,
    auth_event_id      text,
    created_at         bigint NOT NULL,
    state              text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'gone')),
    gone_at            bigint,
    PRIMARY KEY (connection_id, tenant_id)
  );
  CREATE INDEX tenants_by_tenant_id ON tenants(tenant_id);

  -- Each lease taken gets a number from this sequence: a holder's commit is accepted only under its own number.
  CREATE SEQUENCE refresh_lease_fence;
  CREATE TABLE refresh_leases (
    connection_id text COLLATE "C" PRIMARY KEY REFERENCES connections(id) ON DELETE CASCADE,
    holder        text NOT NULL,
    acquired_at   bigint NOT NULL,
    expires_at    bigint NOT NULL,
    fence         bigint NOT NULL
  );

  CREATE TABLE oauth_states (
    state          text COLLATE "C" PRIMARY KEY,
    code_verifier  text NOT NULL,
    browser_hash   text COLLATE "C",
    created_at     bigint NOT NULL,
    expires_at     bigint NOT NULL,
    used_at        bigint,
    connection_id  text,
    error          text
  );
  CREATE INDEX oauth_states_by_browser_hash ON oauth_states(browser_hash);

  CREATE TABLE api_keys (
    key_hash     text COLLATE "C" PRIMARY KEY,
    name         text COLLATE "C" NOT NULL,
    tenants      text NOT NULL,
    role         text NOT NULL CHECK (role IN ('client', 'admin')),
    created_at   bigint NOT NULL,
    last_used_at bigint,
    revoked_at   bigint
  );
  CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;

  CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            bigint NOT NULL,
    actor         text,
    action        text NOT NULL,
    tenant_id     text,
    connection_id text,
    outcome       text NOT NULL,
    detail        text
  );
  CREATE INDEX audit_log_by_time ON audit_log(at);
  `,
  // 2: Xero's call limits shared by every broker on the database, as SQLite's migration 4.
  `
  CREATE TABLE quota_slots (
    slot_id    text COLLATE "C" PRIMARY KEY,
    scope      text COLLATE "C" NOT NULL,
    expires_at bigint NOT NULL
  );
  CREATE INDEX quota_slots_by_scope ON quota_slots(scope, expires_at);

  CREATE TABLE quota_calls (
    scope text COLLATE "C" NOT NULL,
    unit  text NOT NULL CHECK (unit IN ('s', 'm', 'h')),
    start bigint NOT NULL,
    calls bigint NOT NULL DEFAULT 0,
    extra bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, unit, start)
  );

  CREATE TABLE quota_holds (
    scope   text COLLATE "C" PRIMARY KEY,
    problem text NOT NULL,
    until   bigint NOT NULL
  );
  `,
  // 3: custom connections, as SQLite's migration 5: their name and client id (the client secret is the token
  // set's sealed refresh_token).
  `
  ALTER TABLE connections ADD COLUMN custom_name text COLLATE "C" UNIQUE;
  ALTER TABLE connections ADD COLUMN client_id text;
  `,
  // 4: as SQLite's migration 6: when each connection's organisations were last re-read, and each tenant last listed.
  postgresMigration4TenantChecks,
];
