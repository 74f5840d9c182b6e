import type { Interceptor } from "@connectrpc/connect";
import { createCallGuard } from "../server/call-guard.js";
import { guardInterceptor } from "../server/guard-interceptor.js";
import type { AuditLog } from "./audit-log.js";
import { createAuditStep } from "./audit-step.js";

/** Options for {@link createAuditInterceptor}. */
export interface AuditInterceptorOptions {
  audit: AuditLog;
  /** Services whose calls are audited (default `tokenbroker.v1.TokenService`). */
  services?: readonly string[];
}

/**
 * A Connect interceptor that records every token handed out and every
 * request a key was not allowed to make: the guard step of `createAuditStep`
 * alone, for a Connect router of your own (the broker's port runs it with
 * its other steps, on every path).
 */
export function createAuditInterceptor(options: AuditInterceptorOptions): Interceptor {
  return guardInterceptor(createCallGuard([createAuditStep(options.audit)]), options.services);
}
