import { createHash, randomBytes } from "node:crypto";
import * as oidc from "openid-client";
import { systemClock, type Clock } from "../clock.js";
import { LINK_PREFIX, type AuthorizationStatus } from "../store/pending-authorization.js";
import type { Store } from "../store/store.js";
import { UpstreamError, type IdentityServer, type ObtainedTokenSet } from "../upstream/identity-server.js";
import { ConsentError } from "./consent-error.js";
import { storeGrant, type StoredGrant } from "./store-grant.js";

/** Options for {@link createConsentFlow}. */
export interface ConsentFlowOptions {
  /** Where pending authorisations, token sets and tenants are kept. */
  store: Pick<Store, "connections" | "consents">;
  /** Builds the authorization URL, exchanges the code, lists the tenants. */
  identity: IdentityServer;
  /** Where the issuer sends the browser back (registered with the app); no query. */
  redirectUri: string;
  /** Scopes to ask for; should include `offline_access`. */
  scopes: readonly string[];
  /** Time source for state expiry and token timestamps. */
  clock?: Clock;
  /** How long a started consent may take, ms (default 10 minutes). */
  stateTtlMs?: number;
}

/** A consent just started: send the person's browser to `url`. */
export interface StartedConsent {
  url: URL;
  state: string;
  /** After this (ms since the epoch) the callback is refused. */
  expiresAt: number;
}

/** The authorization-code flow with PKCE and `state`, without HTTP. */
export interface ConsentFlow {
  readonly redirectUri: string;
  readonly scopes: readonly string[];
  /** How long a started consent may take, ms. */
  readonly stateTtlMs: number;
  /**
   * Starts a consent: a random `state` and PKCE verifier are stored, and the
   * issuer's authorization URL is returned. `browserSecret` (a cookie value)
   * binds the consent to the browser that started it.
   */
  begin(options: { browserSecret: string }): Promise<StartedConsent>;
  /**
   * Starts a consent that no browser holds yet (`tokenbroker connect`): returns
   * the secret of its one-time link; the first browser to open the link
   * ({@link ConsentFlow.claim}) takes the consent and is sent to the issuer.
   */
  beginWithLink(): Promise<{ state: string; linkSecret: string; expiresAt: number }>;
  /**
   * Binds the consent behind a one-time link to the browser whose cookie is
   * `browserSecret`, once: the issuer's authorization URL, or undefined when the
   * link is unknown, was opened before, or its consent has expired.
   */
  claim(linkSecret: string, browserSecret: string): Promise<StartedConsent | undefined>;
  /**
   * Finishes a consent from the callback's query parameters: checks the state
   * (known, same browser, unused, not expired), spends the code with the PKCE
   * verifier, and stores the token set and tenants. Throws {@link ConsentError};
   * nothing is stored then. A callback from a browser without the consent's
   * cookie (`wrong_browser`) leaves the state usable by its own browser, even
   * when it carries an `error`.
   */
  complete(params: URLSearchParams, options?: { browserSecret?: string | undefined }): Promise<StoredGrant>;
  /** How a started consent stands (what `tokenbroker connect` waits on). */
  status(state: string): Promise<AuthorizationStatus | undefined>;
}

/** Creates the consent flow. */
export function createConsentFlow(options: ConsentFlowOptions): ConsentFlow {
  const { store, identity, redirectUri, scopes } = options;
  const clock = options.clock ?? systemClock;
  const ttlMs = options.stateTtlMs ?? 10 * 60_000;
  const minutes = Math.round(ttlMs / 60_000);

  async function takeState(params: URLSearchParams, browserSecret: string | undefined) {
    const state = params.get("state");
    if (!state) {
      throw new ConsentError(
        "missing_state",
        "The answer from Xero carries no state, so it cannot be matched to a consent this broker started.",
      );
    }
    const taken = await store.consents.takeAuthorization(state, clock.now(), browserSecret === undefined ? undefined : hash(browserSecret));
    if (!taken.ok) {
      switch (taken.reason) {
        case "unknown":
          throw new ConsentError(
            "unknown_state",
            "This broker did not start this consent (unknown state). Start again with “Connect an organisation”.",
          );
        case "wrong_browser":
          throw wrongBrowser();
        case "used":
          throw new ConsentError(
            "reused_state",
            "This consent was already completed (its state was used before); an answer is accepted only once.",
          );
        case "expired":
          throw new ConsentError(
            "expired_state",
            `This consent was started more than ${minutes} minutes ago and has expired. Start again.`,
          );
      }
    }
    return { state, codeVerifier: taken.codeVerifier };
  }

  async function start(browserHash: string) {
    const state = oidc.randomState();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const url = await authorizationUrl(state, codeVerifier);
    const now = clock.now();
    const expiresAt = now + ttlMs;
    await store.consents.createAuthorization({ state, codeVerifier, browserHash, createdAt: now, expiresAt });
    return { url, state, expiresAt };
  }

  async function authorizationUrl(state: string, codeVerifier: string): Promise<URL> {
    const codeChallenge = await oidc.calculatePKCECodeChallenge(codeVerifier);
    return identity.authorizationUrl({ redirectUri, scopes, state, codeChallenge });
  }

  return {
    redirectUri,
    scopes,
    stateTtlMs: ttlMs,

    begin({ browserSecret }) {
      return start(hash(browserSecret));
    },

    async beginWithLink() {
      // The authorization URL is built when a browser opens the link, by whoever serves the redirect URI.
      const linkSecret = randomBytes(32).toString("base64url");
      const state = oidc.randomState();
      const now = clock.now();
      const expiresAt = now + ttlMs;
      const codeVerifier = oidc.randomPKCECodeVerifier();
      await store.consents.createAuthorization({
        state,
        codeVerifier,
        browserHash: `${LINK_PREFIX}${hash(linkSecret)}`,
        createdAt: now,
        expiresAt,
      });
      return { state, linkSecret, expiresAt };
    },

    async claim(linkSecret, browserSecret) {
      const claimed = await store.consents.claimAuthorization(hash(linkSecret), hash(browserSecret), clock.now());
      if (!claimed) return undefined;
      return { url: await authorizationUrl(claimed.state, claimed.codeVerifier), state: claimed.state, expiresAt: claimed.expiresAt };
    },

    async complete(params, { browserSecret } = {}) {
      const issuerError = params.get("error");
      if (issuerError !== null) {
        const description = params.get("error_description");
        const said = `${printable(issuerError, 64)}${description ? `: ${printable(description, 200)}` : ""}`;
        const state = params.get("state");
        if (state) {
          // The consent's own browser uses the state up (so that `tokenbroker connect` stops waiting); any other is refused.
          const taken = await store.consents.takeAuthorization(
            state,
            clock.now(),
            browserSecret === undefined ? undefined : hash(browserSecret),
          );
          if (taken.ok) await store.consents.finishAuthorization(state, { error: said });
          else if (taken.reason === "wrong_browser") throw wrongBrowser();
        }
        throw new ConsentError("denied", `Xero did not grant access (${said}).`);
      }
      const { state, codeVerifier } = await takeState(params, browserSecret);
      if (!params.get("code")) {
        await store.consents.finishAuthorization(state, { error: "missing_code" });
        throw new ConsentError("missing_code", "The answer from Xero carries no authorisation code.");
      }
      let obtained: ObtainedTokenSet;
      try {
        obtained = await identity.exchangeCode({ redirectUri, callbackParams: params, expectedState: state, codeVerifier });
      } catch (e) {
        const upstream = e instanceof UpstreamError ? e : undefined;
        const message = upstream?.message ?? "the code exchange failed";
        await store.consents.finishAuthorization(state, { error: message });
        if (upstream?.kind === "invalid_grant") {
          throw new ConsentError("code_rejected", `Xero refused the authorisation code (${message}). Start again.`, { cause: e });
        }
        throw new ConsentError("unavailable", `Xero could not be asked for the token set (${message}). Try again later.`, { cause: e });
      }
      let stored: StoredGrant;
      try {
        stored = await storeGrant(store, identity, obtained, { addedBy: obtained.authEventId });
      } catch (e) {
        await store.consents.finishAuthorization(state, { error: "the token set could not be stored" }).catch(() => {});
        throw e;
      }
      if (stored.tenantsError !== undefined) {
        await store.connections.recordError(stored.connectionId, `connected, but its tenants could not be read: ${stored.tenantsError}`);
      }
      await store.consents.finishAuthorization(state, { connectionId: stored.connectionId });
      return stored;
    },

    status(state) {
      return store.consents.getAuthorization(state, clock.now());
    },
  };
}

function hash(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

function wrongBrowser(): ConsentError {
  return new ConsentError(
    "wrong_browser",
    "This consent was started in another browser (or its cookie was lost), so this browser cannot complete it. It stays open for the browser that started it.",
  );
}

/** Printable ASCII only, cut to `max` characters: the issuer's words go on a page and into the database. */
function printable(text: string, max: number): string {
  const clean = text.replace(/[^\x20-\x7E]/g, "?");
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
