/**
 * The Xero API proxy over TLS at both ends: a broker serving HTTP/2 and
 * HTTP/1.1 over TLS (ALPN), and an `https:` API (as Xero's is) whose
 * certificate the proxy checks against the configured CA. Certificates are
 * made by `openssl`.
 */
import * as http2 from "node:http2";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "./helpers/broker-fixture.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { makeTestCertificates, opensslMissing, type TestCertificates } from "./helpers/test-certificates.js";

const noOpenssl = opensslMissing();

describe.skipIf(noOpenssl)("the proxy over TLS", () => {
  let dir: ReturnType<typeof tempDir>;
  let certs: TestCertificates;
  let api: https.Server;
  let apiUrl: string;
  let f: SecureBrokerFixture;
  let key: string;
  const seen: Array<{ url: string | undefined; tenant: unknown; auth: unknown }> = [];

  beforeAll(async () => {
    dir = tempDir();
    certs = makeTestCertificates(dir.path);
    api = https.createServer({ cert: certs.serverCert, key: certs.serverKey }, (req, res) => {
      seen.push({ url: req.url, tenant: req.headers["xero-tenant-id"], auth: req.headers.authorization });
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"Organisations":[]}');
    });
    await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
    apiUrl = `https://127.0.0.1:${(api.address() as AddressInfo).port}`;
    f = await startSecureBroker({
      server: { tls: { cert: certs.serverCert, key: certs.serverKey }, proxy: { apiUrl, tls: { ca: certs.ca } } },
    });
    key = f.createKey("tls-channel", "*");
  }, 30_000);

  afterAll(async () => {
    await f?.close();
    api?.closeAllConnections();
    await new Promise<void>((resolve) => (api ? api.close(() => resolve()) : resolve()));
    dir?.cleanup();
  });

  it("forwards an HTTP/2-over-TLS call to an https: API with the tenant's token", async () => {
    const session = http2.connect(f.server.url, { ca: certs.ca });
    const answer = await new Promise<{ status: number; body: string; headers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      const stream = session.request({
        ":path": "/xero/api.xro/2.0/Organisation",
        authorization: `Bearer ${key}`,
        "xero-tenant-id": f.tenantId,
      });
      let body = "";
      let status = 0;
      let headers: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        headers = h;
      });
      stream.setEncoding("utf8").on("data", (c: string) => (body += c));
      stream.on("end", () => resolve({ status, body, headers }));
      stream.on("error", reject);
      stream.end();
    });
    session.close();
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('{"Organisations":[]}');
    expect(answer.headers["connection"]).toBeUndefined();
    const token = (await f.store.tokens.getToken(f.connectionId))!.accessToken;
    expect(seen.at(-1)).toMatchObject({ url: "/api.xro/2.0/Organisation", tenant: f.tenantId, auth: `Bearer ${token}` });
  });

  it("refuses an API whose certificate it cannot check: 502, and Xero is not called", async () => {
    const untrusted = await startSecureBroker({ server: { proxy: { apiUrl } } }); // no CA for the API's certificate
    try {
      const k = untrusted.createKey("c", "*");
      const before = seen.length;
      const res = await fetch(`${untrusted.server.url}/xero/api.xro/2.0/Organisation`, {
        headers: { authorization: `Bearer ${k}`, "xero-tenant-id": untrusted.tenantId },
      });
      expect(res.status).toBe(502);
      expect(seen.length).toBe(before);
    } finally {
      await untrusted.close();
    }
  });
});
