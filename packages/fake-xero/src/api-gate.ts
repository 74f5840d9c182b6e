import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import type { AccountingBook } from "./accounting-data.js";
import type { FakeXeroContext } from "./context.js";
import type { GrantView, TenantRecord } from "./grants.js";
import { sendJson } from "./http-util.js";
import { authorize, problem } from "./resource-endpoints.js";

/** A call the gate let through: whose it is, and the limit headers its answer must carry. */
export interface AdmittedCall {
  grant: GrantView;
  /** Headers for the answer: `X-DayLimit-Remaining`, `X-MinLimit-Remaining`, `X-AppMinLimit-Remaining`. */
  headers: Record<string, string>;
}

/** An admitted accounting call, with its tenant and that tenant's data. */
export interface AdmittedTenantCall extends AdmittedCall {
  tenant: TenantRecord;
  book: AccountingBook;
}

/**
 * Lets an accounting API call through as Xero does, or answers it: 401 with
 * `WWW-Authenticate` for a missing, invalid or expired bearer token; 403
 * `AuthenticationUnsuccessful` when `xero-tenant-id` names no tenant of the
 * token's grant; 429 with `Retry-After` and `X-Rate-Limit-Problem` over a
 * limit of that tenant or of the app. An admitted call counts as in flight
 * until its response ends, and waits the configured API latency first.
 */
export async function admitTenantCall(
  ctx: FakeXeroContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<AdmittedTenantCall | undefined> {
  const grant = authorize(ctx, req, res);
  if (!grant) return undefined;
  const wanted = req.headers["xero-tenant-id"];
  const id = typeof wanted === "string" ? wanted.trim().toLowerCase() : undefined;
  const tenant = id ? grant.tenants.find((t) => t.tenantId.toLowerCase() === id) : undefined;
  if (!tenant) {
    sendJson(res, 403, problem(403, "Forbidden", "AuthenticationUnsuccessful"));
    return undefined;
  }
  const headers = await admit(ctx, res, tenant.tenantId);
  return headers && { grant, tenant, headers, book: ctx.api.bookOf(tenant) };
}

/**
 * Lets a call without a tenant (`/connections`) through: only the app's
 * minute limit applies to it. Same answers as {@link admitTenantCall} otherwise.
 */
export async function admitAppCall(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse): Promise<AdmittedCall | undefined> {
  const grant = authorize(ctx, req, res);
  if (!grant) return undefined;
  const headers = await admit(ctx, res, undefined);
  return headers && { grant, headers };
}

async function admit(ctx: FakeXeroContext, res: ServerResponse, tenantId: string | undefined): Promise<Record<string, string> | undefined> {
  const admission = ctx.api.limiter.admit(tenantId);
  res.once("close", admission.release);
  if (!admission.ok) {
    sendJson(res, 429, problem(429, "Too Many Requests", `Rate limit exceeded: ${admission.problem}`), admission.headers);
    return undefined;
  }
  if (ctx.api.latencyMs > 0) {
    try {
      await delay(ctx.api.latencyMs, undefined, { signal: ctx.closing });
    } catch {
      return undefined;
    }
  }
  return admission.headers;
}
