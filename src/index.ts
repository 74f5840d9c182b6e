/**
 * tokenbroker as a library: the server, its parts, and the generated API.
 * Channels that only call the broker need `@tokenbroker/client` (its `/proto` export has
 * the bare generated stubs), which has no native or server dependency.
 */
export { startBrokerServer, type BrokerServer, type BrokerServerOptions } from "./server/broker-server.js";
export { createHealthMonitor, type HealthMonitor, type HealthMonitorOptions, type Readiness } from "./health/health-monitor.js";
export { addServerReflection } from "./reflection/server-reflection.js";
export { TokenBroker, type Selector, type TokenBrokerOptions } from "./broker/token-broker.js";
export { Scheduler, type SchedulerOptions } from "./broker/scheduler.js";
export type { RefresherOptions } from "./broker/refresher.js";
export type { WatchGate } from "./broker/watch-hub.js";
export type { RefreshCause, RefreshEvent, RefreshOutcome, RefreshWaitEvent } from "./broker/refresh-events.js";
export { createBrokerMetrics, type BrokerMetrics, type BrokerMetricsOptions } from "./metrics/broker-metrics.js";
export { createNotifier, type Notifier, type NotifierOptions } from "./notify/notifier.js";
export type { ConnectionEvent, ConnectionEventType } from "./notify/connection-event.js";
export { SIGNATURE_HEADER, signWebhook, verifyWebhookSignature, type VerifyOptions } from "./notify/webhook-signature.js";
export { createLogger, type LogFormat, type LoggerOptions } from "./logger.js";
export { openStore } from "./store/open-store.js";
export type { Store, StoreOptions } from "./store/store.js";
export { LeaseLostError, RotationIncompleteError, UnreadableTokenSetError } from "./store/token-set-store.js";
export type { LeaseResult, ReencryptOptions, ReencryptResult, TokenSetStore, TokenState } from "./store/token-set-store.js";
export type { ConnectionStore, ConnectionSummary, SaveConnectionInput, TenantSummary } from "./store/connection-store.js";
export type { ConsentStore } from "./store/consent-store.js";
export { DuplicateKeyNameError, type ApiKeyRecord, type ApiKeyStore, type NewApiKey } from "./store/api-key-store.js";
export type { AuditQuery, AuditStore } from "./store/audit-store.js";
export { createOidcIdentityServer, type OidcIdentityServerOptions } from "./upstream/oidc-identity-server.js";
export { UpstreamError, type IdentityServer, type XeroConnection } from "./upstream/identity-server.js";
export { importRefreshToken, type ImportResult } from "./importer.js";
export { createConsentFlow, type ConsentFlow, type ConsentFlowOptions, type StartedConsent } from "./consent/consent-flow.js";
export { ConsentError, type ConsentErrorKind } from "./consent/consent-error.js";
export { storeGrant, type StoredGrant } from "./consent/store-grant.js";
export { createTokenCipher, keyIdOf, DecryptionError, type TokenCipher } from "./crypto/token-cipher.js";
export { generateEncryptionKey, parseEncryptionKey, readKeyFile } from "./crypto/encryption-keys.js";
export { generateApiKey, hashApiKey, type KeyScope, type Principal } from "./auth/api-key.js";
export { createAuthenticator, type Authenticator, type AuthenticatorOptions } from "./auth/authenticator.js";
export { createAuthInterceptor, principalKey, type AuthInterceptorOptions } from "./auth/auth-interceptor.js";
export { adminOf, createAdminGate, type AdminGate, type AdminGateOptions } from "./auth/require-admin.js";
export { createAuditLog, type AuditEntry, type AuditLog, type AuditLogOptions, type AuditSink } from "./audit/audit-log.js";
export type { BrokerAuthOptions } from "./server/server-security.js";
export { createCallGuard, type CallGuard, type CallHead, type GuardedCall, type GuardStep } from "./server/call-guard.js";
export { guardInterceptor } from "./server/guard-interceptor.js";
export type { OnePortTls } from "./server/one-port-server.js";
export { BrokerError, type BrokerErrorKind } from "./errors.js";
export { ManualClock, systemClock, type Clock } from "./clock.js";
export type { ConnectionState, Tenant, TokenRecord, TokenSet } from "./token-set.js";
export * from "../gen/ts/tokenbroker/v1/token_service_pb.js";
