/** Options for {@link createXeroFetch}. */
export interface XeroFetchOptions {
  /** The broker's base URL, e.g. `http://127.0.0.1:50051` (the proxy is at its `/xero/`). */
  baseUrl: string;
  /** The channel's broker API key (`tbk_…`), sent as `authorization: Bearer`. */
  apiKey: string;
  /** The organisation called when a call names none (sent as `xero-tenant-id`). */
  tenantId?: string;
  /** The `fetch` to send with (default the global one). */
  fetch?: typeof fetch;
}

/** `fetch`'s options, plus the organisation of this call. */
export type XeroFetchInit = RequestInit & {
  /** The Xero organisation (`xero-tenant-id`); default {@link XeroFetchOptions.tenantId}. */
  tenantId?: string;
};

/** A `fetch` for Xero's API through the broker's proxy; `path` is Xero's, e.g. `api.xro/2.0/Invoices?page=1`. */
export type XeroFetch = (path: string, init?: XeroFetchInit) => Promise<Response>;

/**
 * A `fetch` that calls Xero's API through the broker's proxy (`/xero/…`):
 * the broker adds the organisation's access token, refreshes it after Xero's
 * 401 and retries (once), and keeps every organisation's call budget shared
 * by all channels (a broker's own 429 carries `Retry-After`). The channel
 * holds no Xero token at all. Use it rather than `TokenClient.fetch` unless
 * the calls must go to Xero directly (then they do not share the budget).
 *
 * @example
 * ```ts
 * const xero = createXeroFetch({ baseUrl: "http://127.0.0.1:50051", apiKey: process.env.TOKENBROKER_API_KEY!, tenantId });
 * const res = await xero("api.xro/2.0/Invoices?page=1", { headers: { accept: "application/json" } });
 * ```
 */
export function createXeroFetch(options: XeroFetchOptions): XeroFetch {
  const base = `${options.baseUrl.replace(/\/+$/, "")}/xero/`;
  const send = options.fetch ?? fetch;
  return (path, init = {}) => {
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(path) || path.startsWith("//")) {
      return Promise.reject(new TypeError("createXeroFetch: give Xero's path (e.g. api.xro/2.0/Invoices), not a URL"));
    }
    const { tenantId = options.tenantId, ...rest } = init;
    const headers = new Headers(rest.headers);
    headers.set("authorization", `Bearer ${options.apiKey}`);
    if (tenantId !== undefined) headers.set("xero-tenant-id", tenantId);
    return send(base + path.replace(/^\/+/, ""), { ...rest, headers });
  };
}
