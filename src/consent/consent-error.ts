/**
 * Why a consent callback was refused. Each kind has a message a person can
 * act on; none carries a code, a token or a verifier.
 */
export type ConsentErrorKind =
  /** The callback has no `state`: it cannot be matched to a consent the broker started. */
  | "missing_state"
  /** The broker never started a consent with this `state` (or forgot it long ago). */
  | "unknown_state"
  /** The callback for this `state` already came once: a replay. */
  | "reused_state"
  /** The consent was started more than the allowed time (10 minutes) ago. */
  | "expired_state"
  /** The consent was started in another browser (its cookie is missing or different). */
  | "wrong_browser"
  /** The issuer answered with an `error` (e.g. the user clicked Cancel: `access_denied`). */
  | "denied"
  /** No `code` in the callback. */
  | "missing_code"
  /** The issuer refused the code (wrong PKCE verifier, reused or expired code, wrong redirect URI). */
  | "code_rejected"
  /** The issuer could not be reached, or the broker's client is misconfigured: try again later. */
  | "unavailable";

/** A refused consent callback; nothing was stored. */
export class ConsentError extends Error {
  override readonly name = "ConsentError";

  constructor(
    readonly kind: ConsentErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
