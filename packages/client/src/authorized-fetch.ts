import type { TokenInfo } from "./token-info.js";

/** `fetch`'s options plus the tenant to call. */
export type TokenFetchInit = RequestInit & {
  /** The Xero organisation: picks the token and is sent as `xero-tenant-id`. */
  tenantId: string;
};

/** Where {@link authorizedFetch} gets tokens. */
export interface TokenSource {
  /** A valid token for the tenant. */
  token(tenantId: string): Promise<TokenInfo>;
  /** The token to use after `rejected` got 401. */
  replace(tenantId: string, rejected: string): Promise<TokenInfo>;
}

/**
 * `fetch` with `Authorization: Bearer <token>` and `xero-tenant-id` set. On a
 * 401 the token is reported and the request is sent once more with the token
 * that comes back, if its body can be sent twice (none, a string, bytes, a
 * Blob, URLSearchParams or FormData). A stream body cannot be re-read: the 401
 * is returned as is (the token is still reported, so the next call succeeds).
 */
export async function authorizedFetch(source: TokenSource, input: string | URL | Request, init: TokenFetchInit): Promise<Response> {
  const { tenantId, ...rest } = init;
  const first = await source.token(tenantId);
  const response = await fetch(input, withToken(input, rest, tenantId, first.accessToken));
  if (response.status !== 401) return response;
  const next = await source.replace(tenantId, first.accessToken);
  if (next.accessToken === first.accessToken || !canResend(input, rest.body)) return response;
  await response.body?.cancel();
  return fetch(input, withToken(input, rest, tenantId, next.accessToken));
}

/** The request options with the token and tenant headers added. */
function withToken(input: string | URL | Request, init: RequestInit, tenantId: string, accessToken: string): RequestInit {
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  headers.set("authorization", `Bearer ${accessToken}`);
  headers.set("xero-tenant-id", tenantId);
  return { ...init, headers };
}

/** Whether the request body can be sent a second time. */
function canResend(input: string | URL | Request, body: RequestInit["body"]): boolean {
  if (body === undefined) return !(input instanceof Request && input.body !== null);
  return (
    body === null ||
    typeof body === "string" ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof URLSearchParams ||
    body instanceof Blob ||
    body instanceof FormData
  );
}
