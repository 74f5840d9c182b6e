/**
 * migration 6 (SQLite; PostgreSQL's 2 is the same): the periodic re-read of
 * each connection's organisations. `connections.tenants_checked_at` is when a
 * broker last claimed the re-read (a compare-and-set, so one broker of those
 * sharing the store does it); `tenants.checked_at` is when Xero's
 * connections list last listed the tenant.
 */
export const migration6TenantChecks = `
  ALTER TABLE connections ADD COLUMN tenants_checked_at INTEGER;
  ALTER TABLE tenants ADD COLUMN checked_at INTEGER;
`;

/** {@link migration6TenantChecks} for PostgreSQL (timestamps in ms as `bigint`). */
export const postgresMigration4TenantChecks = `
  ALTER TABLE connections ADD COLUMN tenants_checked_at bigint;
  ALTER TABLE tenants ADD COLUMN checked_at bigint;
`;
