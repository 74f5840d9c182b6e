import type { IncomingMessage, ServerResponse } from "node:http";
import type { FakeXeroContext, OrganisationRecord } from "./context.js";
import { renderAuthorizeError, renderConsentPage, sendHtml } from "./consent-page.js";
import { readBody, sendJson } from "./http-util.js";

/** The authorization request parameters the consent form carries through. */
const CARRIED = ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"];

/** A valid authorization request. */
interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  scopes: string[];
  state: string | null;
  codeChallenge: string | undefined;
  hidden: Record<string, string>;
}

type Checked =
  | { ok: true; request: AuthorizationRequest }
  /** Cannot go back to the client (unknown client, bad redirect URI): an error page. */
  | { ok: false; page: string }
  /** Goes back to the client's redirect URI with `error`. */
  | { ok: false; redirect: URL };

/** `GET /identity/connect/authorize`: the sign-in and consent page. */
export function handleAuthorizeGet(ctx: FakeXeroContext, _req: IncomingMessage, res: ServerResponse, url: URL): void {
  const checked = checkRequest(ctx, url.searchParams);
  if (!checked.ok) return refuse(res, checked);
  sendHtml(res, 200, renderConsentPage(model(ctx, checked.request, ctx.lastUser, new Set())));
}

/**
 * `POST /identity/connect/authorize`: the consent form. "Allow access"
 * creates the user's grant (or extends it, under a new authEventId) with the
 * ticked organisations and redirects back with a single-use code; "Cancel"
 * redirects back with `error=access_denied`.
 */
export async function handleAuthorizePost(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readBody(req);
  if (body === undefined) return sendHtml(res, 413, renderAuthorizeError("the form is too large"));
  const form = new URLSearchParams(body);
  const checked = checkRequest(ctx, form);
  if (!checked.ok) return refuse(res, checked);
  const request = checked.request;
  if (form.get("action") !== "allow") {
    return redirect(res, back(request.redirectUri, request.state, { error: "access_denied", error_description: "The user cancelled" }));
  }
  const user = (form.get("user") ?? "").trim();
  const chosen = form
    .getAll("tenant")
    .map((id) => ctx.organisations.find((o) => o.tenantId === id))
    .filter((o): o is OrganisationRecord => o !== undefined);
  const problem = user === "" ? "Sign in: enter a user." : chosen.length === 0 ? "Choose at least one organisation." : undefined;
  if (problem) {
    const page = renderConsentPage({ ...model(ctx, request, user, new Set(chosen.map((o) => o.tenantId))), problem });
    return sendHtml(res, 400, page);
  }
  // One grant per user: a new consent extends it (a revoked one is replaced by a new grant).
  let grantId = ctx.grants.grantOfUser(user)?.grantId;
  if (grantId === undefined) grantId = ctx.grants.addGrant({ userId: user, tenants: chosen }).grantId;
  else ctx.grants.addTenants(grantId, chosen);
  ctx.lastUser = user;
  const code = ctx.codes.issue({
    grantId,
    clientId: request.clientId,
    redirectUri: request.redirectUri,
    codeChallenge: request.codeChallenge,
  });
  redirect(res, back(request.redirectUri, request.state, { code, scope: request.scopes.join(" ") }));
}

/**
 * The `authorization_code` grant of the token endpoint (the client is already
 * authenticated): a single-use code, the same redirect URI, and the PKCE
 * verifier of the challenge. Every refusal is `invalid_grant`.
 */
export function handleAuthorizationCodeGrant(ctx: FakeXeroContext, form: URLSearchParams, res: ServerResponse): void {
  const noStore = { "Cache-Control": "no-store", Pragma: "no-cache" };
  const code = form.get("code");
  if (!code) return sendJson(res, 400, { error: "invalid_request" }, noStore);
  const outcome = ctx.codes.redeem(code, {
    clientId: ctx.clientId,
    redirectUri: form.get("redirect_uri"),
    codeVerifier: form.get("code_verifier"),
  });
  const grant = outcome.ok ? ctx.grants.getGrant(outcome.grant.grantId) : undefined;
  if (!outcome.ok || !grant || grant.revoked) {
    ctx.counters.invalidGrants++;
    const description = outcome.ok ? "grant revoked" : outcome.reason;
    return sendJson(res, 400, { error: "invalid_grant", error_description: description }, noStore);
  }
  const issued = ctx.grants.issue(grant.grantId, (g, rt) => ctx.tokens.mint(g, rt));
  ctx.counters.codeExchanges++;
  sendJson(res, 200, issued, noStore);
}

function checkRequest(ctx: FakeXeroContext, params: URLSearchParams): Checked {
  if (params.get("client_id") !== ctx.clientId) return { ok: false, page: "unknown client_id" };
  const redirectUri = params.get("redirect_uri") ?? "";
  if (!isAbsoluteHttpUrl(redirectUri)) return { ok: false, page: "redirect_uri is missing or not an absolute http(s) URL" };
  const state = params.get("state");
  const fail = (error: string, description: string): Checked => ({
    ok: false,
    redirect: back(redirectUri, state, { error, error_description: description }),
  });
  if (params.get("response_type") !== "code") return fail("unsupported_response_type", "response_type must be code");
  const challenge = params.get("code_challenge");
  if (challenge !== null) {
    if (params.get("code_challenge_method") !== "S256") return fail("invalid_request", "code_challenge_method must be S256");
    if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) return fail("invalid_request", "code_challenge is malformed");
  }
  const scopes = (params.get("scope") ?? "").split(" ").filter((s) => s !== "");
  if (scopes.length === 0) return fail("invalid_scope", "no scope requested");
  const unknown = scopes.filter((s) => !ctx.scopes.includes(s));
  if (unknown.length > 0) return fail("invalid_scope", `unknown scope ${unknown[0]}`);
  const hidden: Record<string, string> = {};
  for (const name of CARRIED) {
    const value = params.get(name);
    if (value !== null) hidden[name] = value;
  }
  return {
    ok: true,
    request: { clientId: ctx.clientId, redirectUri, scopes, state, codeChallenge: challenge ?? undefined, hidden },
  };
}

function model(ctx: FakeXeroContext, request: AuthorizationRequest, user: string, checked: Set<string>) {
  return { hidden: request.hidden, clientId: request.clientId, scopes: request.scopes, user, organisations: ctx.organisations, checked };
}

/** The redirect URI with response parameters added (and `state` echoed when the request had one). */
function back(redirectUri: string, state: string | null, params: Record<string, string>): URL {
  const url = new URL(redirectUri);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  if (state !== null) url.searchParams.set("state", state);
  return url;
}

function refuse(res: ServerResponse, checked: Extract<Checked, { ok: false }>): void {
  if ("redirect" in checked) return redirect(res, checked.redirect);
  sendHtml(res, 400, renderAuthorizeError(checked.page));
}

function redirect(res: ServerResponse, to: URL): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(303, { Location: to.href, "Content-Length": 0, "Cache-Control": "no-store" });
  res.end();
}

function isAbsoluteHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hash === "";
  } catch {
    return false;
  }
}
