/** What the proxy answers for each error it meets before or instead of Xero's answer. */
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BrokerError, needsReauthorizationError } from "../../src/errors.js";
import { refusalOf } from "../../src/proxy/proxy-answers.js";
import { UpstreamCallError } from "../../src/proxy/upstream-call.js";
import { QuotaExceededError } from "../../src/quota/call-budget.js";
import { StoreUnavailableError } from "../../src/store/store.js";

describe("refusalOf", () => {
  it.each([
    [new ConnectError("no key", Code.Unauthenticated), 401, "unauthenticated"],
    [new ConnectError("scope", Code.PermissionDenied), 403, "permission_denied"],
    [new ConnectError("store", Code.Unavailable), 503, "unavailable"],
    [new BrokerError("not_found", "tenant t is not connected"), 404, "not_found"],
    [needsReauthorizationError("c1"), 409, "needs_reauthorization"],
    [new BrokerError("unavailable", "Xero's identity server failed"), 503, "unavailable"],
    [new BrokerError("misconfigured", "invalid_client"), 503, "misconfigured"],
    [new BrokerError("unreadable", "sealed under another key"), 503, "unreadable"],
    [new UpstreamCallError("unreachable", "cannot reach Xero's API (ECONNREFUSED)"), 502, "upstream_unreachable"],
    [new UpstreamCallError("timeout", "Xero did not answer within 60000 ms"), 504, "upstream_timeout"],
  ] as const)("%s → %i %s", (error, status, code) => {
    expect(refusalOf(error)).toMatchObject({ status, code });
  });

  it("answers a store out of reach with 503", () => {
    expect(refusalOf(new StoreUnavailableError("down")).status).toBe(503);
  });

  it("answers the budget's refusal with 429, Retry-After in whole seconds and Xero's name of the limit", () => {
    expect(refusalOf(new QuotaExceededError("app_minute", 1500, true))).toMatchObject({
      status: 429,
      code: "quota_exceeded",
      headers: { "retry-after": "2", "x-rate-limit-problem": "appminute" },
    });
  });

  it("rethrows anything else (the port answers 500 and logs it)", () => {
    expect(() => refusalOf(new TypeError("bug"))).toThrow(TypeError);
  });
});
