/**
 * Why a call on the fake Xero's control API (not its HTTP endpoints) failed.
 * HTTP clients never see these: they get OAuth-style error bodies instead.
 */
export type FakeXeroErrorCode =
  /** An option or argument is out of range (negative latency, bad port...). */
  | "invalid_argument"
  /** No grant with that id. */
  | "grant_not_found"
  /** The server could not start listening. */
  | "listen_failed";

/** The one error type the fake Xero's control API throws. */
export class FakeXeroError extends Error {
  override readonly name = "FakeXeroError";

  constructor(
    readonly code: FakeXeroErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
