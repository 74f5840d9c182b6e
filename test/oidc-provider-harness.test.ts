import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ClientSecretBasic,
  ResponseBodyError,
  allowInsecureRequests,
  discovery,
  refreshTokenGrant,
  type Configuration,
} from "openid-client";

import { startOidcProvider, type OidcProviderHarness } from "./helpers/oidc-provider.js";

/** Runs `fn`, expecting it to reject with an OAuth `invalid_grant` error body. */
async function expectInvalidGrant(fn: () => Promise<unknown>): Promise<ResponseBodyError> {
  const error: unknown = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ResponseBodyError);
  const bodyError = error as ResponseBodyError;
  expect(bodyError.error).toBe("invalid_grant");
  return bodyError;
}

describe("oidc-provider harness", () => {
  let harness: OidcProviderHarness;
  let config: Configuration;

  beforeAll(async () => {
    harness = await startOidcProvider({ accessTokenTtlSeconds: 30 });
    config = await discovery(new URL(harness.issuer), harness.clientId, harness.clientSecret, ClientSecretBasic(harness.clientSecret), {
      execute: [allowInsecureRequests],
    });
  });

  afterAll(async () => {
    await harness?.close();
  });

  it("serves discovery metadata openid-client accepts", () => {
    expect(harness.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const metadata = config.serverMetadata();
    expect(metadata.issuer).toBe(harness.issuer);
    expect(metadata.token_endpoint).toBe(`${harness.issuer}/token`);
    expect(metadata.grant_types_supported).toContain("refresh_token");
    expect(metadata.token_endpoint_auth_methods_supported).toContain("client_secret_basic");
  });

  it("rotates refresh tokens, and reuse of a spent one revokes the whole grant", async () => {
    const before = harness.tokenEndpointCalls;
    const rt0 = await harness.mintRefreshToken("alice");
    expect(harness.tokenEndpointCalls).toBe(before); // minting is not an HTTP call

    const first = await refreshTokenGrant(config, rt0);
    expect(first.access_token).toEqual(expect.any(String));
    expect(first.token_type.toLowerCase()).toBe("bearer");
    expect(first.expires_in).toBe(30);
    expect(first.scope?.split(" ").sort()).toEqual(["offline_access", "openid"]);
    expect(first.claims()?.sub).toBe("alice");
    const rt1 = first.refresh_token;
    expect(rt1).toEqual(expect.any(String));
    expect(rt1).not.toBe(rt0);
    expect(harness.tokenEndpointCalls).toBe(before + 1);

    const second = await refreshTokenGrant(config, rt1!);
    expect(second.access_token).not.toBe(first.access_token);
    const rt2 = second.refresh_token;
    expect(rt2).toEqual(expect.any(String));
    expect(rt2).not.toBe(rt1);
    expect(harness.tokenEndpointCalls).toBe(before + 2);

    // Replaying the spent rt1: rejected, and the grant is revoked ...
    const errorsBefore = harness.tokenEndpointErrors.length;
    const revokedBefore = harness.revokedGrants;
    await expectInvalidGrant(() => refreshTokenGrant(config, rt1!));
    expect(harness.tokenEndpointCalls).toBe(before + 3);
    expect(harness.revokedGrants).toBe(revokedBefore + 1);

    // ... so even the newest refresh token of that grant is now dead.
    await expectInvalidGrant(() => refreshTokenGrant(config, rt2!));
    // And so is the original one.
    await expectInvalidGrant(() => refreshTokenGrant(config, rt0));
    expect(harness.tokenEndpointCalls).toBe(before + 5);
    expect(harness.revokedGrants).toBe(revokedBefore + 1);

    // The wire error_description is generic; the reason is in the harness log.
    expect(harness.tokenEndpointErrors.slice(errorsBefore)).toEqual([
      { error: "invalid_grant", detail: "refresh token already used" },
      { error: "invalid_grant", detail: "refresh token not found" },
      { error: "invalid_grant", detail: "refresh token not found" },
    ]);
  });

  it("keeps grants independent: revoking one account's grant leaves another's working", async () => {
    const bobRt = await harness.mintRefreshToken("bob", ["accounting.transactions"]);
    const carolRt = await harness.mintRefreshToken("carol");

    const bob1 = await refreshTokenGrant(config, bobRt);
    expect(bob1.scope?.split(" ").sort()).toEqual(["accounting.transactions", "offline_access", "openid"]);
    await refreshTokenGrant(config, bob1.refresh_token!);
    await expectInvalidGrant(() => refreshTokenGrant(config, bobRt)); // bob's grant revoked

    const carol1 = await refreshTokenGrant(config, carolRt);
    const carol2 = await refreshTokenGrant(config, carol1.refresh_token!);
    expect(carol2.refresh_token).toEqual(expect.any(String));
    expect(carol2.claims()?.sub).toBe("carol");
  });

  it("counts failed token-endpoint POSTs too", async () => {
    const before = harness.tokenEndpointCalls;
    await expectInvalidGrant(() => refreshTokenGrant(config, "not-a-refresh-token"));
    expect(harness.tokenEndpointCalls).toBe(before + 1);
  });

  it("catches concurrent double refreshes too: one wins, then the grant is revoked", async () => {
    // With the in-memory adapter, loading the token and marking it consumed
    // happen without yielding to I/O, so simultaneous requests are serialised.
    for (let i = 0; i < 20; i++) {
      const rt = await harness.mintRefreshToken(`dave-${i}`);
      const results = await Promise.allSettled([refreshTokenGrant(config, rt), refreshTokenGrant(config, rt)]);
      const winners = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      const losers = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
      expect(winners).toHaveLength(1);
      expect(losers).toHaveLength(1);
      expect(losers[0]).toBeInstanceOf(ResponseBodyError);
      expect((losers[0] as ResponseBodyError).error).toBe("invalid_grant");
      // The loser's reuse revoked the grant, including the winner's new token.
      await expectInvalidGrant(() => refreshTokenGrant(config, winners[0]!.refresh_token!));
    }
  });

  it("close() stops the server and is idempotent", async () => {
    const other = await startOidcProvider();
    const url = new URL("/.well-known/openid-configuration", other.issuer);
    expect((await fetch(url)).status).toBe(200);
    await Promise.all([other.close(), other.close()]);
    await expect(fetch(url)).rejects.toThrow();
  });
});
