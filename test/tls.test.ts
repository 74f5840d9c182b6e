/**
 * TLS on the one port: HTTP/2 and HTTP/1.1 chosen by ALPN, tested with
 * @grpc/grpc-js and Connect clients; mutual TLS refuses clients without a
 * certificate from the configured CA. Certificates are made by `openssl`.
 */
import * as http2 from "node:http2";
import * as https from "node:https";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { grpcJsGetToken } from "./helpers/grpc-js-get-token.js";
import { startSecureBroker, withKey, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { makeTestCertificates, opensslMissing, type TestCertificates } from "./helpers/test-certificates.js";

let dir: ReturnType<typeof tempDir>;
let certs: TestCertificates;
const noOpenssl = opensslMissing();
beforeAll(() => {
  dir = tempDir();
  if (!noOpenssl) certs = makeTestCertificates(dir.path);
});
afterAll(() => dir.cleanup());

type NodeTls = { ca?: Buffer; cert?: Buffer; key?: Buffer };

/** Connect transports over TLS, each with the given TLS options. */
const secureTransports: Array<{ name: string; transport: (baseUrl: string, tls: NodeTls) => Transport }> = [
  { name: "gRPC (HTTP/2)", transport: (baseUrl, tls) => createGrpcTransport({ baseUrl, nodeOptions: tls }) },
  {
    name: "Connect JSON (HTTP/1.1)",
    transport: (baseUrl, tls) => createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: tls }),
  },
  { name: "gRPC-Web (HTTP/1.1)", transport: (baseUrl, tls) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1", nodeOptions: tls }) },
  {
    name: "Connect binary (HTTP/2)",
    transport: (baseUrl, tls) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, nodeOptions: tls }),
  },
];

async function codeOf(promise: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await promise;
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

/**
 * True when the call failed at the TLS handshake. connect-node reports that
 * with a code that depends on the HTTP version and on when the alert arrives
 * (with TLS 1.3 the server checks the client's certificate after the client
 * has sent its request): INTERNAL with the TLS error, or CANCELED/ABORTED
 * when the connection is closed under the request.
 */
async function refused(promise: Promise<unknown>): Promise<boolean> {
  try {
    await promise;
    return false;
  } catch (e) {
    const error = ConnectError.from(e);
    expect([Code.Unavailable, Code.Internal, Code.Canceled, Code.Aborted]).toContain(error.code);
    expect(error.message).toMatch(/certificate|alert|socket hang up|CANCEL/i);
    return true;
  }
}

/** The ALPN protocol a TLS client ends up with, and the HTTP version the server answered with. */
async function negotiated(url: string, h2: boolean): Promise<{ alpn: string | false | null; httpVersion: string; status: number }> {
  if (h2) {
    const session = http2.connect(url, { ca: certs.ca });
    try {
      return await new Promise((resolve, reject) => {
        session.on("error", reject);
        const req = session.request({ ":path": "/healthz" });
        req.on("response", (headers) => {
          req.resume();
          resolve({ alpn: session.alpnProtocol ?? false, httpVersion: "2.0", status: Number(headers[":status"]) });
        });
        req.on("error", reject);
        req.end();
      });
    } finally {
      session.close();
    }
  }
  return new Promise((resolve, reject) => {
    const req = https.get(`${url}/healthz`, { ca: certs.ca, agent: false }, (res) => {
      res.resume();
      const socket = res.socket as import("node:tls").TLSSocket;
      resolve({ alpn: socket.alpnProtocol, httpVersion: res.httpVersion, status: res.statusCode ?? 0 });
    });
    req.on("error", reject);
  });
}

describe.skipIf(noOpenssl)("TLS", () => {
  let f: SecureBrokerFixture;
  let key: string;
  afterEach(async () => {
    await f?.close();
  });

  describe("server certificate only", () => {
    it("serves HTTP/2 (ALPN h2) and HTTP/1.1 over TLS on one port, with an https:// URL", async () => {
      f = await startSecureBroker({ server: { tls: { cert: certs.serverCert, key: certs.serverKey } } });
      expect(f.server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(await negotiated(f.server.url, true)).toEqual({ alpn: "h2", httpVersion: "2.0", status: 200 });
      expect(await negotiated(f.server.url, false)).toMatchObject({ httpVersion: "1.1", status: 200 });
    });

    it.each(secureTransports)("Connect client over $name: a token with a key; the server's CA is checked", async ({ transport }) => {
      f = await startSecureBroker({ server: { tls: { cert: certs.serverCert, key: certs.serverKey } } });
      key = f.createKey("tls", "*");
      const client = createClient(TokenService, transport(f.server.url, { ca: certs.ca }));
      const { token } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } }, withKey(key));
      expect(token?.connectionId).toBe(f.connectionId);
      expect(await codeOf(client.getToken({ selector: { case: "tenantId", value: f.tenantId } }))).toBe(Code.Unauthenticated);
      // Without the CA the server's certificate is not trusted.
      const untrusting = createClient(TokenService, transport(f.server.url, {}));
      expect(await refused(untrusting.getToken({ selector: { case: "tenantId", value: f.tenantId } }, withKey(key)))).toBe(true);
    });

    it("@grpc/grpc-js with createSsl gets a token; a cleartext client gets nothing", async () => {
      f = await startSecureBroker({ server: { tls: { cert: certs.serverCert, key: certs.serverKey } } });
      key = f.createKey("grpc-js", [f.tenantId]);
      const target = new URL(f.server.url).host;
      const client = grpcJsGetToken(target, grpc.credentials.createSsl(certs.ca));
      const cleartext = grpcJsGetToken(target, grpc.credentials.createInsecure());
      try {
        const ok = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } }, { authorization: `Bearer ${key}` });
        expect(ok.code).toBe(grpc.status.OK);
        expect(ok.response?.token?.connectionId).toBe(f.connectionId);
        const plain = await cleartext.getToken({ selector: { case: "tenantId", value: f.tenantId } }, { authorization: `Bearer ${key}` });
        expect(plain.code).toBe(grpc.status.UNAVAILABLE);
      } finally {
        client.close();
        cleartext.close();
      }
    });
  });

  describe("mutual TLS (--tls-client-ca)", () => {
    const mtls = () => ({ tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca } });

    it.each(secureTransports)("Connect client over $name: with a client certificate from the CA only", async ({ transport }) => {
      f = await startSecureBroker({ server: mtls() });
      key = f.createKey("mtls", "*");
      const req = { selector: { case: "tenantId" as const, value: f.tenantId } };
      const withCert = createClient(TokenService, transport(f.server.url, { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }));
      expect((await withCert.getToken(req, withKey(key))).token?.connectionId).toBe(f.connectionId);
      // The certificate does not replace the API key.
      expect(await codeOf(withCert.getToken(req))).toBe(Code.Unauthenticated);
      const noCert = createClient(TokenService, transport(f.server.url, { ca: certs.ca }));
      expect(await refused(noCert.getToken(req, withKey(key)))).toBe(true);
      const stranger = createClient(
        TokenService,
        transport(f.server.url, { ca: certs.ca, cert: certs.strangerCert, key: certs.strangerKey }),
      );
      expect(await refused(stranger.getToken(req, withKey(key)))).toBe(true);
      expect((await withCert.getToken(req, withKey(key))).token?.connectionId).toBe(f.connectionId);
      // Only the two calls with a certificate (and a key) reached the service.
      const handedOut = (await f.auditEntries()).filter((e) => e.action === "get_token" && e.outcome === "ok");
      expect(handedOut).toHaveLength(2);
    });

    it("@grpc/grpc-js: createSsl with the client certificate gets a token; without it or with a stranger's, UNAVAILABLE", async () => {
      f = await startSecureBroker({ server: mtls() });
      key = f.createKey("mtls", "*");
      const target = new URL(f.server.url).host;
      const md = { authorization: `Bearer ${key}` };
      const req = { selector: { case: "tenantId" as const, value: f.tenantId } };
      const clients = {
        withCert: grpcJsGetToken(target, grpc.credentials.createSsl(certs.ca, certs.clientKey, certs.clientCert)),
        noCert: grpcJsGetToken(target, grpc.credentials.createSsl(certs.ca)),
        stranger: grpcJsGetToken(target, grpc.credentials.createSsl(certs.ca, certs.strangerKey, certs.strangerCert)),
      };
      try {
        expect((await clients.withCert.getToken(req, md)).code).toBe(grpc.status.OK);
        expect((await clients.noCert.getToken(req, md)).code).toBe(grpc.status.UNAVAILABLE);
        expect((await clients.stranger.getToken(req, md)).code).toBe(grpc.status.UNAVAILABLE);
        // The refused handshakes did not hurt the server.
        expect((await clients.withCert.getToken(req, md)).code).toBe(grpc.status.OK);
      } finally {
        for (const c of Object.values(clients)) c.close();
      }
    });
  });

  it("the status page's session cookie is Secure (and __Host-) over TLS", async () => {
    f = await startSecureBroker({
      server: {
        tls: { cert: certs.serverCert, key: certs.serverKey },
        httpRoutes: [{ method: "GET", path: "/", handle: (_req, res) => res.end("status") }],
      },
    });
    const admin = f.createKey("admin", "*", { admin: true });
    const res = await new Promise<{ status: number; cookie: string }>((resolve, reject) => {
      const req = https.request(
        `${f.server.url}/login`,
        { method: "POST", ca: certs.ca, agent: false, headers: { "content-type": "application/x-www-form-urlencoded" } },
        (r) => {
          r.resume();
          resolve({ status: r.statusCode ?? 0, cookie: String(r.headers["set-cookie"] ?? "") });
        },
      );
      req.on("error", reject);
      req.end(new URLSearchParams({ key: admin, next: "/" }).toString());
    });
    expect(res.status).toBe(303);
    expect(res.cookie).toMatch(/^__Host-tb_session=[A-Za-z0-9_-]{43};/);
    expect(res.cookie).toMatch(/; Secure/);
    expect(res.cookie).toMatch(/; HttpOnly/);
    expect(res.cookie).toMatch(/; SameSite=Strict/);
  });
});
