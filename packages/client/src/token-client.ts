import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { TokenService } from "./gen/tokenbroker/v1/token_service_pb.js";
import { authorizedFetch, type TokenFetchInit } from "./authorized-fetch.js";
import { defaultReconnect, type ReconnectOptions } from "./backoff.js";
import { createClientTransport } from "./client-transport.js";
import { TenantWatch } from "./tenant-watch.js";
import type { TokenInfo } from "./token-info.js";

/** Options for {@link createTokenClient}. */
export interface TokenClientOptions {
  /** The broker, e.g. `http://127.0.0.1:50051`. Required unless `transport` is given. */
  baseUrl?: string;
  /** A transport of your own (then `baseUrl`, `protocol` and `interceptors` are not used, and `close()` leaves it open). */
  transport?: Transport;
  /** "grpc" (default): gRPC over HTTP/2; "connect": the Connect protocol over HTTP/1.1. */
  protocol?: "grpc" | "connect";
  /** How long a handed-out token must stay valid, ms (default 60 000; at most half the token's lifetime is required). */
  minValidForMs?: number;
  /** Reconnecting a dropped stream (default 100 ms doubling to 30 s, with jitter). */
  reconnect?: Partial<ReconnectOptions>;
  /** Headers sent with every call to the broker (e.g. an API key). */
  headers?: Record<string, string>;
  /** Interceptors for the transport the client creates (logging, metrics). */
  interceptors?: Interceptor[];
}

/** A broker client with a local token cache; see {@link createTokenClient}. */
export interface TokenClient {
  /** An access token for the tenant's Xero organisation. */
  getToken(tenantId: string): Promise<string>;
  /** The access token with its expiry, version and connection. */
  getTokenInfo(tenantId: string): Promise<TokenInfo>;
  /**
   * `fetch` with `Authorization: Bearer …` and `xero-tenant-id` set; on a 401
   * the token is reported to the broker and the request retried once with the
   * new one (string, bytes, Blob, URLSearchParams and FormData bodies; a
   * stream body cannot be sent twice, so its 401 is returned).
   */
  fetch(input: string | URL | Request, init: TokenFetchInit): Promise<Response>;
  /** Cancels every stream, timer and call in flight and closes the client's connections. */
  close(): Promise<void>;
}

/**
 * A client of the broker that keeps each tenant's token in a local cache,
 * kept current by one `WatchToken` stream per tenant: after the first call
 * for a tenant, tokens are handed out with no RPC at all. A dropped stream is
 * reopened with backoff, and `GetToken` answers meanwhile. A connection that
 * needs re-authorisation is refused with FAILED_PRECONDITION, without calls.
 *
 * @example
 * const tb = createTokenClient({ baseUrl: "http://127.0.0.1:50051" });
 * const res = await tb.fetch("https://api.xero.com/api.xro/2.0/Invoices", { tenantId });
 */
export function createTokenClient(options: TokenClientOptions): TokenClient {
  const minValidForMs = options.minValidForMs ?? 60_000;
  if (!Number.isFinite(minValidForMs) || minValidForMs < 0) throw new RangeError("minValidForMs must be a number ≥ 0");
  const reconnect = { ...defaultReconnect, ...options.reconnect };
  if (!(reconnect.initialDelayMs > 0 && reconnect.maxDelayMs >= reconnect.initialDelayMs)) {
    throw new RangeError("reconnect needs initialDelayMs > 0 and maxDelayMs ≥ initialDelayMs");
  }
  let transport = options.transport;
  let closeTransport = () => {};
  if (!transport) {
    if (!options.baseUrl) throw new TypeError("createTokenClient needs a baseUrl or a transport");
    const owned = createClientTransport({
      baseUrl: options.baseUrl,
      protocol: options.protocol ?? "grpc",
      interceptors: options.interceptors ?? [],
    });
    transport = owned.transport;
    closeTransport = owned.close;
  }
  const client = createClient(TokenService, transport);
  const watches = new Map<string, TenantWatch>();
  let closed = false;

  function watchOf(tenantId: string): TenantWatch {
    if (closed) throw new ConnectError("the token client is closed", Code.Canceled);
    if (typeof tenantId !== "string" || tenantId === "") throw new ConnectError("tenantId is empty", Code.InvalidArgument);
    let watch = watches.get(tenantId);
    if (!watch) {
      const created = new TenantWatch({
        client,
        tenantId,
        reconnect,
        headers: options.headers,
        onGone: () => {
          if (watches.get(tenantId) === created) watches.delete(tenantId);
        },
      });
      watches.set(tenantId, created);
      watch = created;
    }
    return watch;
  }

  const getTokenInfo = async (tenantId: string) => watchOf(tenantId).token(minValidForMs);
  return {
    getTokenInfo,
    async getToken(tenantId) {
      return (await getTokenInfo(tenantId)).accessToken;
    },
    fetch(input, init) {
      return authorizedFetch(
        { token: getTokenInfo, replace: async (tenantId, rejected) => watchOf(tenantId).replace(rejected) },
        input,
        init,
      );
    },
    async close() {
      closed = true;
      const all = [...watches.values()];
      watches.clear();
      await Promise.all(all.map((w) => w.close()));
      closeTransport();
    },
  };
}
