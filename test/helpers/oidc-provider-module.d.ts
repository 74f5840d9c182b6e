/**
 * Minimal ambient type declarations for the parts of `oidc-provider` (which
 * ships no TypeScript types) used by the test harness in
 * `test/helpers/oidc-provider.ts`.
 *
 * Deliberately NOT named `oidc-provider.d.ts`: tsc drops a `.d.ts` from the
 * program when a `.ts` file with the same basename sits next to it.
 */

declare module "oidc-provider" {
  import type { IncomingMessage, ServerResponse } from "node:http";

  /** The subset of a Koa context the harness middleware touches. */
  export interface KoaContextWithOIDC {
    readonly method: string;
    readonly path: string;
  }

  export type Middleware = (ctx: KoaContextWithOIDC, next: () => Promise<unknown>) => Promise<unknown>;

  /** A registered client, as returned by `Provider#Client.find`. */
  export interface Client {
    readonly clientId: string;
  }

  export interface ClientStatic {
    find(id: string): Promise<Client | undefined>;
  }

  export interface Grant {
    readonly jti: string | undefined;
    addOIDCScope(scope: string | readonly string[] | Set<string>): void;
    /** Persists the grant and resolves to its id. */
    save(): Promise<string>;
  }

  export interface GrantStatic {
    new (init: { accountId: string; clientId: string; expiresIn?: number }): Grant;
    find(id: string): Promise<Grant | undefined>;
  }

  export interface RefreshTokenInit {
    accountId: string;
    client: Client;
    grantId: string;
    scope: string;
    gty: string;
    rotations?: number;
    authTime?: number;
    iiat?: number;
    sessionUid?: string;
    sid?: string;
    expiresWithSession?: boolean;
    acr?: string;
    amr?: string[];
    claims?: Record<string, unknown>;
    resource?: string | string[];
    nonce?: string;
  }

  export interface RefreshToken {
    readonly jti: string | undefined;
    /** Persists the token and resolves to its value (the opaque refresh token string). */
    save(): Promise<string>;
  }

  export interface RefreshTokenStatic {
    new (init: RefreshTokenInit): RefreshToken;
  }

  export interface AccountClaims {
    sub: string;
    [claim: string]: unknown;
  }

  export interface Account {
    accountId: string;
    claims(use: string, scope: string, claims: unknown, rejected: string[]): Promise<AccountClaims> | AccountClaims;
  }

  /** Configuration accepted by `new Provider(...)`; deliberately loose. */
  export type Configuration = Record<string, unknown>;

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    readonly Client: ClientStatic;
    readonly Grant: GrantStatic;
    readonly RefreshToken: RefreshTokenStatic;
    use(middleware: Middleware): this;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    on(event: string, listener: (...args: unknown[]) => void): this;
    urlFor(name: string, options?: Record<string, unknown>): string;
  }

  export default Provider;
}

declare module "oidc-provider/lib/adapters/memory_adapter.js" {
  /**
   * oidc-provider's own in-memory adapter factory, scoped to one store. Passing
   * it explicitly as `adapter` gives the exact default behaviour without the
   * "development-only in-memory adapter" console warning.
   */
  export function createMemoryAdapter(clockTolerance?: number): (model: string) => unknown;
}
