import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import type { FakeXeroContext, TokenEndpointHttpFailure } from "./context.js";
import { handleAuthorizationCodeGrant } from "./authorize-endpoint.js";
import { handleClientCredentialsGrant } from "./client-credentials.js";
import { authenticateClient, readBody, sendJson, sendText } from "./http-util.js";

/** Token responses must never be cached (RFC 6749 §5.1). */
const NO_STORE = { "Cache-Control": "no-store", Pragma: "no-cache" };

/**
 * `POST /connect/token`. Every call is counted; a scripted failure is taken
 * when the request arrives and answered without touching any state; the
 * latency passes before anything is decided, so a refresh token is spent only
 * when the answer is produced (even if the client has given up by then).
 */
export async function handleToken(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  ctx.counters.tokenEndpointCalls++;
  const failure = ctx.failures.shift();
  const latency = ctx.latencyMs;
  const body = await readBody(req);
  // The latency, cut short (and the request left unanswered) when the fake closes.
  if (latency > 0) await delay(latency, undefined, { signal: ctx.closing }).catch(() => {});
  if (ctx.closing.aborted) return;
  if (failure && "reset" in failure) return void req.socket.destroy();
  if (failure) return sendFailure(res, failure);
  if (body === undefined) return sendJson(res, 413, { error: "invalid_request" }, NO_STORE);
  const form = new URLSearchParams(body);
  // A custom connection authenticates as its own app, not as the one the fake was started with.
  if (form.get("grant_type") === "client_credentials") return handleClientCredentialsGrant(ctx, req, form, res);
  if (!authenticateClient(req, form, ctx)) return sendJson(res, 401, { error: "invalid_client" }, NO_STORE);

  const grantType = form.get("grant_type");
  if (grantType === null) return sendJson(res, 400, { error: "invalid_request" }, NO_STORE);
  if (grantType === "authorization_code") return handleAuthorizationCodeGrant(ctx, form, res);
  if (grantType !== "refresh_token") return sendJson(res, 400, { error: "unsupported_grant_type" }, NO_STORE);
  const refreshToken = form.get("refresh_token");
  if (!refreshToken) return sendJson(res, 400, { error: "invalid_request" }, NO_STORE);

  const outcome = ctx.grants.refresh(refreshToken, (grant, rt) => ctx.tokens.mint(grant, rt));
  if (!outcome.ok) {
    ctx.counters.invalidGrants++;
    if (outcome.reason === "grace_expired") ctx.counters.graceViolations++;
    return sendJson(res, 400, { error: "invalid_grant" }, NO_STORE);
  }
  ctx.counters.refreshes++;
  sendJson(res, 200, outcome.issued, NO_STORE);
}

/**
 * `POST /connect/revocation` with `token=<refresh token>`: revokes the whole
 * grant (and so all its connections). An unknown token is still a 200 (RFC 7009).
 */
export async function handleRevocation(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req);
  if (body === undefined) return sendJson(res, 413, { error: "invalid_request" });
  const form = new URLSearchParams(body);
  if (!authenticateClient(req, form, ctx)) return sendJson(res, 401, { error: "invalid_client" });
  const token = form.get("token");
  if (!token) return sendJson(res, 400, { error: "invalid_request" });
  const grantId = ctx.grants.grantIdOf(token);
  if (grantId !== undefined) ctx.grants.revoke(grantId);
  sendText(res, 200);
}

function sendFailure(res: ServerResponse, failure: TokenEndpointHttpFailure): void {
  const retryAfter = failure.retryAfterSeconds ?? (failure.status === 429 ? 1 : undefined);
  const headers: Record<string, string> = { ...NO_STORE };
  if (retryAfter !== undefined) headers["Retry-After"] = String(retryAfter);
  if (failure.error !== undefined) return sendJson(res, failure.status, { error: failure.error }, headers);
  sendText(res, failure.status, `fake failure ${failure.status}`, headers);
}
