/**
 * Migration 4: Xero's call limits as counted by every broker sharing the
 * database (see quota-store.ts): call-in-flight slots, calls per bucket
 * (second, minute, hour) and Xero's 429 holds. A scope is `app` or
 * `tenant:<tenant id>`.
 */
export const migration4Quota = `
  CREATE TABLE quota_slots (
    slot_id    TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX quota_slots_by_scope ON quota_slots(scope, expires_at);

  CREATE TABLE quota_calls (
    scope TEXT NOT NULL,
    unit  TEXT NOT NULL CHECK (unit IN ('s', 'm', 'h')),
    start INTEGER NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    extra INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, unit, start)
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE quota_holds (
    scope   TEXT PRIMARY KEY,
    problem TEXT NOT NULL,
    until   INTEGER NOT NULL
  ) STRICT;
`;
