import type { IncomingMessage, ServerResponse } from "node:http";
import type { FakeXeroContext } from "./context.js";
import { authenticateClient, sendJson } from "./http-util.js";

/** Token responses must never be cached (RFC 6749 §5.1). */
const NO_STORE = { "Cache-Control": "no-store", Pragma: "no-cache" };

/** A registered custom connection app: its own client and the one organisation it reaches. */
export interface CustomAppRecord {
  clientId: string;
  clientSecret: string;
  /** The grant standing for the app's connection to its organisation (no user ever consented). */
  grantId: string;
}

/**
 * `grant_type=client_credentials` at `POST /connect/token`, as Xero answers a custom connection: the app
 * authenticates with its own client id and secret (HTTP Basic or the form); the answer is an access token for its
 * one organisation, with no refresh token and no id token. An unknown app or a wrong (e.g. rotated) secret is
 * `401 invalid_client`.
 */
export function handleClientCredentialsGrant(ctx: FakeXeroContext, req: IncomingMessage, form: URLSearchParams, res: ServerResponse): void {
  const app = [...ctx.customApps.values()].find((a) => authenticateClient(req, form, a));
  if (!app) return sendJson(res, 401, { error: "invalid_client" }, NO_STORE);
  const grant = ctx.grants.getGrant(app.grantId);
  if (!grant || grant.revoked) return sendJson(res, 401, { error: "invalid_client" }, NO_STORE);
  const { access_token, expires_in, token_type, scope } = ctx.tokens.mint(grant, "");
  ctx.counters.clientCredentialsGrants++;
  sendJson(res, 200, { access_token, expires_in, token_type, scope }, NO_STORE);
}
