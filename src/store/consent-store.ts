import type { AuthorizationStatus, ClaimedAuthorization, NewPendingAuthorization, TakenAuthorization } from "./pending-authorization.js";

/**
 * The consent state: each consent the broker started (its `state` and PKCE
 * verifier) until the issuer's callback ends it. Each step is atomic, so a
 * state is used once however many requests race for it.
 */
export interface ConsentStore {
  /** Records a consent just started (its state and PKCE verifier); also forgets long-expired ones. */
  createAuthorization(pending: NewPendingAuthorization): Promise<void>;
  /**
   * Marks a state used, atomically, and returns its verifier, unless it is unknown, not bound to `browserHash`
   * (the state is then left untouched), already used or expired (at `now`).
   */
  takeAuthorization(state: string, now: number, browserHash: string | undefined): Promise<TakenAuthorization>;
  /**
   * Binds the pending consent whose one-time link hashes to `linkHash` to the browser `browserHash`, atomically,
   * once: undefined if no unused, unexpired consent is waiting for that link (unknown, opened before, expired).
   */
  claimAuthorization(linkHash: string, browserHash: string, now: number): Promise<ClaimedAuthorization | undefined>;
  /** Records how a taken authorisation ended: the connection it stored, or why it failed. */
  finishAuthorization(state: string, outcome: { connectionId: string } | { error: string }): Promise<void>;
  /** How a pending authorisation stands (no verifier), or undefined if unknown. */
  getAuthorization(state: string, now: number): Promise<AuthorizationStatus | undefined>;
}
