/**
 * A consent the broker started and is waiting for: the `state` sent to the
 * issuer with its PKCE verifier. The verifier is a secret (with the code it
 * buys a token set): it is stored, compared and sent to the token endpoint,
 * never logged or shown.
 */
export interface NewPendingAuthorization {
  /** The random `state` parameter: the row's key. */
  state: string;
  /** The PKCE `code_verifier` whose S256 challenge went to the issuer. */
  codeVerifier: string;
  /**
   * Who may complete the consent: the SHA-256 (hex) of the cookie of the browser that started it (`/connect`),
   * or, for a consent started by `tokenbroker connect`, {@link LINK_PREFIX} and the SHA-256 of its one-time
   * link's secret until a browser opens that link and takes the consent (see `claimAuthorization`).
   */
  browserHash: string;
  /** ms since the epoch. */
  createdAt: number;
  /** After this (ms since the epoch) the state is refused. */
  expiresAt: number;
}

/** Marks a `browserHash` that is still a one-time link's (no browser holds the consent yet). */
export const LINK_PREFIX = "link:";

/**
 * Result of `ConsentStore.takeAuthorization`: when `ok`, the state is used from now on, whatever happens next.
 * `wrong_browser` (the browser does not hold the consent's cookie) leaves the state as it was, usable by
 * its own browser: an outsider who knows a state cannot burn it.
 */
export type TakenAuthorization =
  | { ok: true; codeVerifier: string }
  | { ok: false; reason: "unknown" | "wrong_browser" | "used" | "expired" };

/** A consent a browser just took by opening its one-time link: what is needed to send it to the issuer. */
export interface ClaimedAuthorization {
  state: string;
  codeVerifier: string;
  expiresAt: number;
}

/** How a pending authorisation stands, without its verifier: what `tokenbroker connect` waits on. */
export interface AuthorizationStatus {
  /** `pending` until the callback arrives; `done` with a connection id, or `failed` with an error. */
  status: "pending" | "done" | "failed" | "expired";
  connectionId: string | undefined;
  /** Why it failed, safe to show (no token, no verifier). */
  error: string | undefined;
  expiresAt: number;
}
