/**
 * The proxy's settings as `tokenbroker serve` reads them: on by default at
 * Xero's API, off by `TOKENBROKER_PROXY=off`, `http://` only with the
 * insecure-issuer switch, and the identity server's endpoints refused.
 */
import { describe, expect, it } from "vitest";
import { proxyFromEnv } from "../src/cli/proxy-config.js";
import { upstreamFromEnv } from "../src/config.js";
import { createTargetResolver } from "../src/proxy/proxy-target.js";

const base = { TOKENBROKER_CLIENT_ID: "id", TOKENBROKER_CLIENT_SECRET: "secret" };
const read = (env: Record<string, string>) => proxyFromEnv({ ...base, ...env }, upstreamFromEnv({ ...base, ...env }));

describe("proxy settings", () => {
  it("is on by default, at https://api.xero.com, with a 1 MiB replay bound and a 60 s timeout", () => {
    const p = read({});
    expect(String(p?.apiUrl)).toBe("https://api.xero.com/");
    expect(p?.replayMaxBytes).toBe(1024 * 1024);
    expect(p?.timeoutMs).toBe(60_000);
    expect(p?.refused?.map(String)).toEqual([
      "https://identity.xero.com/connect",
      "https://identity.xero.com/identity",
      "https://identity.xero.com/.well-known",
    ]);
  });

  it("is off with TOKENBROKER_PROXY=off, and reads its bound and timeout", () => {
    expect(read({ TOKENBROKER_PROXY: "off" })).toBeUndefined();
    const p = read({ TOKENBROKER_PROXY_REPLAY_KIB: "64", TOKENBROKER_PROXY_TIMEOUT_MS: "2500" });
    expect(p?.replayMaxBytes).toBe(64 * 1024);
    expect(p?.timeoutMs).toBe(2500);
    expect(() => read({ TOKENBROKER_PROXY_REPLAY_KIB: "-1" })).toThrow(/TOKENBROKER_PROXY_REPLAY_KIB/);
  });

  it("takes http:// only with TOKENBROKER_ALLOW_INSECURE_ISSUER, and never a user or a query", () => {
    expect(() => read({ TOKENBROKER_API_URL: "http://127.0.0.1:9" })).toThrow(/TOKENBROKER_API_URL uses http:\/\//);
    expect(() => read({ TOKENBROKER_API_URL: "https://u:p@api.example" })).toThrow(/user or password/);
    expect(() => read({ TOKENBROKER_API_URL: "https://api.example/?x=1" })).toThrow(/no query/);
  });

  it("refuses the identity server's endpoints when it shares the API's origin (the fake Xero)", () => {
    const env = {
      TOKENBROKER_ALLOW_INSECURE_ISSUER: "1",
      TOKENBROKER_ISSUER: "http://127.0.0.1:9",
      TOKENBROKER_API_URL: "http://127.0.0.1:9",
    };
    const p = read(env)!;
    const resolve = createTargetResolver({ apiUrl: p.apiUrl, refused: p.refused! });
    expect(resolve("/xero/connections").ok).toBe(true);
    for (const t of [
      "/xero/connect/token",
      "/xero/connect/revocation",
      "/xero/identity/connect/authorize",
      "/xero/.well-known/openid-configuration",
    ]) {
      expect(resolve(t).ok, t).toBe(false);
    }
    // An issuer with a path: everything under it.
    const under = read({ ...env, TOKENBROKER_ISSUER: "http://127.0.0.1:9/oidc" })!;
    expect(under.refused?.map(String)).toEqual(["http://127.0.0.1:9/oidc"]);
  });
});
