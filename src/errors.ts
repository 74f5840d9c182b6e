import type { CustomConnection } from "./token-set.js";

/**
 * Why a broker operation failed, in the broker's own terms. The transport
 * maps each kind to a gRPC status code; nothing here knows about HTTP.
 */
export type BrokerErrorKind =
  /** The request is malformed (no token set named, or both). */
  | "invalid_argument"
  /** No such tenant or connection. */
  | "not_found"
  /** The connection's refresh token was rejected: a person must re-authorise. */
  | "needs_reauthorization"
  /** The identity server could not be reached or failed; try again later. */
  | "unavailable"
  /** The broker's own configuration is wrong (e.g. invalid_client). */
  | "misconfigured"
  /** The caller gave up (deadline or cancellation) before the work finished. */
  | "cancelled"
  /**
   * The stored token set cannot be used as stored: not sealed although an
   * encryption key is configured, or sealed under a key that is not
   * configured, or altered. Never served or refreshed with; an operator must act.
   */
  | "unreadable";

/**
 * The one error type the token logic throws. `message` is safe to show to a
 * caller: it never contains a token, a secret or an upstream response body.
 */
export class BrokerError extends Error {
  override readonly name = "BrokerError";

  constructor(
    readonly kind: BrokerErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True when `e` is a BrokerError of the given kind. */
export function isBrokerError(e: unknown, kind?: BrokerErrorKind): e is BrokerError {
  return e instanceof BrokerError && (kind === undefined || e.kind === kind);
}

/** The error for a connection whose refresh token (or, for a custom connection, client secret) Xero rejected, saying how to recover. */
export function needsReauthorizationError(connectionId: string, custom?: CustomConnection): BrokerError {
  if (custom) return new BrokerError("needs_reauthorization", `connection ${connectionId} ${customReauthorizationAdvice(custom)}`);
  return new BrokerError(
    "needs_reauthorization",
    `connection ${connectionId} needs re-authorisation: Xero rejected its refresh token (invalid_grant). ` +
      `Re-authorise it: click "Re-authorise" on the status page (or run \`tokenbroker connect\`) and sign in to Xero as the same user, ` +
      `or pipe a new refresh token of that user into \`tokenbroker import\``,
  );
}

/**
 * What a custom connection whose client id or secret Xero rejected needs: said the same way by GetToken, the
 * status page and `tokenbroker connections` (it is the connection's last error). Names no secret.
 */
export function customReauthorizationAdvice(custom: CustomConnection): string {
  return (
    `(custom connection ${JSON.stringify(custom.name)}) needs re-authorisation: Xero rejected its client id or secret ` +
    `(invalid_client; was the secret rotated?). Run \`tokenbroker custom add --name ${JSON.stringify(custom.name)} ` +
    `--client-id ${custom.clientId}\` again and give it the app's current client secret on standard input`
  );
}

/**
 * The error for a tenant that Xero no longer lists for the grant that served
 * it (the organisation was disconnected at Xero, deleted, or reset to a new
 * tenant id): `not_found`, with a message unlike "not connected".
 */
export function tenantRemovedError(removed: {
  tenantId: string;
  tenantName?: string | undefined;
  connectionId: string;
  goneAt: number;
}): BrokerError {
  const name = removed.tenantName ? ` (${removed.tenantName})` : "";
  return new BrokerError(
    "not_found",
    `tenant ${removed.tenantId}${name} was disconnected at Xero: the connections list of connection ${removed.connectionId} ` +
      `no longer has it (noticed at ${new Date(removed.goneAt).toISOString()}). Connect the organisation again ` +
      `("Connect" on the status page, or \`tokenbroker connect\`); a demo company that was reset has a new tenant id`,
  );
}
