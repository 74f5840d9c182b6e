/**
 * tokenbroker as a library: the server, its parts, and the generated API.
 * Channels that only call the broker need just `tokenbroker/proto`.
 */
export { startBrokerServer, type BrokerServer, type BrokerServerOptions } from "./server/broker-server.js";
export { TokenBroker, type Selector, type TokenBrokerOptions } from "./broker/token-broker.js";
export { Scheduler, type SchedulerOptions } from "./broker/scheduler.js";
export type { RefresherOptions } from "./broker/refresher.js";
export type { RefreshCause, RefreshEvent, RefreshOutcome } from "./broker/refresh-events.js";
export { openSqliteStore, SqliteStore, type SqliteStoreOptions } from "./store/sqlite-store.js";
export type { TokenStore, ConnectionSummary, TokenState } from "./store/token-store.js";
export { createOidcIdentityServer, type OidcIdentityServerOptions } from "./upstream/oidc-identity-server.js";
export { UpstreamError, type IdentityServer, type XeroConnection } from "./upstream/identity-server.js";
export { importRefreshToken, type ImportResult } from "./importer.js";
export { BrokerError, type BrokerErrorKind } from "./errors.js";
export { ManualClock, systemClock, type Clock } from "./clock.js";
export type { ConnectionState, Tenant, TokenRecord, TokenSet } from "./token-set.js";
export * from "../gen/ts/tokenbroker/v1/token_service_pb.js";
