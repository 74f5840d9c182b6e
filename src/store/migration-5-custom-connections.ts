/**
 * SQLite migration 5: Xero custom connections (the `client_credentials` grant). A connection with a `custom_name`
 * is one: renewed with its own app's `client_id` and client secret, the secret kept sealed in its token set's
 * `refresh_token` column like every other secret (a custom connection has no refresh token).
 */
export const migration5CustomConnections = `
  ALTER TABLE connections ADD COLUMN custom_name TEXT;
  ALTER TABLE connections ADD COLUMN client_id TEXT;
  CREATE UNIQUE INDEX connections_by_custom_name ON connections(custom_name);
`;
