import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { FakeXeroContext } from "./context.js";
import type { GrantView } from "./grants.js";
import { bearerToken, sendJson, sendText } from "./http-util.js";

/** One entry of `GET /connections`, as Xero returns it. */
export interface ConnectionJson {
  id: string;
  authEventId: string;
  tenantId: string;
  tenantType: "ORGANISATION" | "PRACTICE";
  tenantName: string;
  createdDateUtc: string;
  updatedDateUtc: string;
}

/** The body of `GET /connections[?authEventId=...]`: the tenants of the access token's grant. */
export function listConnections(grant: GrantView, url: URL): ConnectionJson[] {
  const authEventId = url.searchParams.get("authEventId");
  return grant.tenants
    .filter((t) => authEventId === null || t.authEventId === authEventId)
    .map((t) => {
      const date = new Date(t.createdAt).toISOString();
      return {
        id: t.connectionId,
        authEventId: t.authEventId,
        tenantId: t.tenantId,
        tenantType: t.tenantType,
        tenantName: t.tenantName,
        createdDateUtc: date,
        updatedDateUtc: date,
      };
    });
}

/** `DELETE /connections/{id}`: disconnects one tenant of the access token's grant. */
export function handleDeleteConnection(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse, connectionId: string): void {
  const grant = authorize(ctx, req, res);
  if (!grant) return;
  if (ctx.grants.removeConnection(grant.grantId, connectionId)) return sendText(res, 204);
  sendJson(res, 404, problem(404, "Not Found", `connection ${connectionId} not found`));
}

/** `GET /connect/userinfo`: the OIDC claims of the access token's user. */
export function handleUserinfo(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse): void {
  const grant = authorize(ctx, req, res);
  if (!grant) return;
  sendJson(res, 200, {
    sub: grant.userId,
    xero_userid: grant.userId,
    preferred_username: `${grant.userId}@example.com`,
    email: `${grant.userId}@example.com`,
    given_name: "Fake",
    family_name: "User",
  });
}

/** The grant behind the request's bearer token, or undefined after answering 401 like Xero's API. */
export function authorize(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse): GrantView | undefined {
  const token = bearerToken(req);
  const check = token === undefined ? undefined : ctx.tokens.check(token);
  const grant = check?.ok ? ctx.grants.getGrant(check.grantId) : undefined;
  if (grant) return grant;
  const detail =
    check?.ok === false && check.reason === "expired"
      ? `TokenExpired: token expired at ${new Date(check.expiredAt).toISOString()}`
      : "AuthenticationUnsuccessful";
  sendJson(res, 401, problem(401, "Unauthorized", detail), { "WWW-Authenticate": 'Bearer error="invalid_token"' });
  return undefined;
}

/** Xero's API error body (RFC 7807 problem details with capitalised names). */
export function problem(status: number, title: string, detail: string): Record<string, unknown> {
  return { Type: null, Title: title, Status: status, Detail: detail, Instance: randomUUID(), Extensions: {} };
}
