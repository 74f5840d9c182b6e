/**
 * Where the Xero API proxy may send a call: a table of hostile targets, each
 * refused, and a property over generated targets (fixed seed): every target
 * accepted resolves to the API's origin, under the API URL's path, to the
 * path exactly as it was written, and never to the identity server.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createTargetResolver } from "../src/proxy/proxy-target.js";

const API = "https://api.xero.com";
const resolve = createTargetResolver({ apiUrl: API, refused: ["https://api.xero.com/connect", "https://api.xero.com/.well-known"] });
const withBase = createTargetResolver({ apiUrl: "https://gw.example/xero-api/" });

describe("target validation", () => {
  it.each([
    ["/xero/connections", "https://api.xero.com/connections"],
    ["/xero/connections/abc-123", "https://api.xero.com/connections/abc-123"],
    ["/xero/api.xro/2.0/Invoices", "https://api.xero.com/api.xro/2.0/Invoices"],
    [
      "/xero/api.xro/2.0/Invoices?where=Status%3D%22PAID%22&page=2",
      "https://api.xero.com/api.xro/2.0/Invoices?where=Status%3D%22PAID%22&page=2",
    ],
    ["/xero/api.xro/2.0/Contacts/3f2a-9c/Attachments/a%20b.pdf", "https://api.xero.com/api.xro/2.0/Contacts/3f2a-9c/Attachments/a%20b.pdf"],
    ["/xero/payroll.xro/1.0/Employees/", "https://api.xero.com/payroll.xro/1.0/Employees/"],
    ["/xero/connectionsx", "https://api.xero.com/connectionsx"],
  ])("forwards %s to %s", (target, url) => {
    const r = resolve(target);
    expect(r.ok && r.url.href).toBe(url);
  });

  it("keeps calls under the API URL's path", () => {
    const r = withBase("/xero/connections?x=1");
    expect(r.ok && r.url.href).toBe("https://gw.example/xero-api/connections?x=1");
    expect(withBase("/xero/../connections").ok).toBe(false);
    expect(withBase("/xero/%2e%2e/admin").ok).toBe(false);
  });

  const hostile = [
    "/xero/",
    "/xero/..",
    "/xero/../connect/token",
    "/xero/api.xro/../../connect/token",
    "/xero/./connections",
    "/xero/api.xro/2.0/.",
    "/xero/%2e%2e/connect/token",
    "/xero/%2E./connect/token",
    "/xero/.%2e/connect/token",
    "/xero/%2E%2E%2Fconnect%2Ftoken",
    "/xero/api.xro%2F..%2Fconnect",
    "/xero/api.xro%2f2.0",
    "/xero/api.xro%5c2.0",
    "/xero/api.xro%5C..%5Cconnect",
    "/xero/%252e%252e/connect",
    "/xero/%25",
    "/xero/a%zz",
    "/xero/a%",
    "/xero/a%2",
    "/xero/api.xro\\2.0",
    "/xero/..\\connect",
    "/xero/@evil.example/",
    "/xero/user@evil.example",
    "/xero/%40evil.example",
    "/xero//evil.example/x",
    "/xero/api.xro//2.0",
    "/xero/https://evil.example/",
    "/xero/http:evil.example",
    "/xero/javascript:alert(1)",
    "/xero/file:///etc/passwd",
    "/xero/a\x00b",
    "/xero/a\tb",
    "/xero/a\r\nHost: evil",
    "/xero/a b",
    "/xero/a%00b",
    "/xero/a%0d%0aHost:%20evil",
    "/xero/a%7f",
    "/xero/a#frag",
    "/xero/a%23frag",
    "/xero/a%3fq",
    "/xero/connections?x=1#y",
    "/xero/connections?a\\b",
    "/xero/connections?a b",
    "/xero/connect/token",
    "/xero/CONNECT/Token",
    "/xero/connect",
    "/xero/.well-known/openid-configuration",
    "/xero/caf\u00e9",
    "/xero/\uff0e\uff0e/connect",
    "/xero/a/%2e",
    "/xero",
    "/xeroconnections",
    "/other/connections",
    "http://evil.example/xero/connections",
    "//evil.example/xero/connections",
  ];
  it.each(hostile.map((t) => [JSON.stringify(t), t]))("refuses %s", (_, target) => {
    const r = resolve(target);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).not.toMatch(/undefined/);
  });

  it("accepts only targets that resolve under the API origin, as written (fast-check, fixed seed)", () => {
    const unit = fc.constantFrom(
      ..."abcXYZ019-._~!$&'()*+,;=:@/\\%?#[]{}|^`\"<> \t\x00\x7f\u00e9\uff0e".split(""),
      "%2e",
      "%2E",
      "%2f",
      "%5c",
      "%25",
      "%20",
      "%41",
      "..",
      "./",
      "//",
      "connect/token",
      ".well-known",
      "http://evil.example",
    );
    const target = fc.array(unit, { maxLength: 16 }).map((parts) => `/xero/${parts.join("")}`);
    fc.assert(
      fc.property(target, (t) => {
        for (const [r, origin, base] of [
          [resolve(t), "https://api.xero.com", "/"],
          [withBase(t), "https://gw.example", "/xero-api/"],
        ] as const) {
          if (!r.ok) continue;
          expect(r.url.origin).toBe(origin);
          expect(r.url.pathname.startsWith(base)).toBe(true);
          expect(r.url.pathname).toBe(base + r.path);
          expect(r.url.username + r.url.password + r.url.hash).toBe("");
          expect(r.url.pathname.split("/")).not.toContain("..");
          expect(decodeURIComponent(r.url.pathname).split("/")).not.toContain("..");
          if (base === "/") expect(r.url.pathname.toLowerCase()).not.toMatch(/^\/(connect|\.well-known)(\/|$)/);
        }
      }),
      { seed: 20_261_205, numRuns: 5000 },
    );
  });
});
