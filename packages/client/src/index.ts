/**
 * `@tokenbroker/client`: a broker client for channels written in TypeScript,
 * with a local token cache kept current by `WatchToken` streams and a `fetch`
 * that sends the token and retries once on 401; and `createXeroFetch`, a
 * `fetch` for Xero's API through the broker's proxy, which holds the tokens
 * and the call budget for every channel. Imports nothing of the server.
 */
export { createTokenClient, type TokenClient, type TokenClientOptions } from "./token-client.js";
export type { TokenFetchInit } from "./authorized-fetch.js";
export type { ReconnectOptions } from "./backoff.js";
export type { TokenInfo } from "./token-info.js";
export { createXeroFetch, type XeroFetch, type XeroFetchInit, type XeroFetchOptions } from "./xero-fetch.js";
