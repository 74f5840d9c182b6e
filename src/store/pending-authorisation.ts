/**
 * A consent the broker started and is waiting for: the `state` sent to the
 * issuer with its PKCE verifier. The verifier is a secret (with the code it
 * buys a token set): it is stored, compared and sent to the token endpoint,
 * never logged or shown.
 */
export interface NewPendingAuthorisation {
  /** The random `state` parameter: the row's key. */
  state: string;
  /** The PKCE `code_verifier` whose S256 challenge went to the issuer. */
  codeVerifier: string;
  /** SHA-256 of the cookie of the browser that started the consent (`/connect`), if one did; the CLI starts unbound ones. */
  browserHash: string | undefined;
  /** ms since the epoch. */
  createdAt: number;
  /** After this (ms since the epoch) the state is refused. */
  expiresAt: number;
}

/** Result of {@link TokenStore.takeAuthorisation}: the state is used from now on, whatever happens next. */
export type TakenAuthorisation =
  | { ok: true; codeVerifier: string; browserHash: string | undefined }
  | { ok: false; reason: "unknown" | "used" | "expired" };

/** How a pending authorisation stands, without its verifier: what `tokenbroker connect` waits on. */
export interface AuthorisationStatus {
  /** `pending` until the callback arrives; `done` with a connection id, or `failed` with an error. */
  status: "pending" | "done" | "failed" | "expired";
  connectionId: string | undefined;
  /** Why it failed, safe to show (no token, no verifier). */
  error: string | undefined;
  expiresAt: number;
}
