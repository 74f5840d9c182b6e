import type { Interceptor } from "@connectrpc/connect";
import { createCallGuard } from "../server/call-guard.js";
import { guardInterceptor, principalKey } from "../server/guard-interceptor.js";
import type { Authenticator } from "./authenticator.js";
import { createAuthStep } from "./auth-step.js";

export { principalKey };

/** Options for {@link createAuthInterceptor}. */
export interface AuthInterceptorOptions {
  authenticator: Authenticator;
  /** The tenant ids served by a connection, or undefined if there is no such connection. */
  tenantsOfConnection(connectionId: string): Promise<readonly string[] | undefined>;
  /** Fully-qualified names of the services that need a key (default `tokenbroker.v1.TokenService`); others (health, reflection) stay open. */
  services?: readonly string[];
}

/**
 * A Connect interceptor that lets through only callers with a valid key,
 * asking only for token sets within the key's scope: the guard step of
 * `createAuthStep` alone, for a Connect router of your own (the broker's
 * port runs it with its other steps, on every path).
 */
export function createAuthInterceptor(options: AuthInterceptorOptions): Interceptor {
  return guardInterceptor(createCallGuard([createAuthStep(options)]), options.services);
}
