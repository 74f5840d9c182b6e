import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { missingSystemPackage } from "./system-requirement.js";

/** PEM files made for one test run. */
export interface TestCertificates {
  /** The CA that signed the server and client certificates. */
  ca: Buffer;
  serverCert: Buffer;
  serverKey: Buffer;
  /** Signed by `ca`, for client authentication. */
  clientCert: Buffer;
  clientKey: Buffer;
  /** A client certificate from another CA, which the server must refuse. */
  strangerCert: Buffer;
  strangerKey: Buffer;
  /** Paths of the same files, for the CLI. */
  paths: { ca: string; serverCert: string; serverKey: string };
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * Why the TLS tests cannot run here (`openssl` makes their certificates), or `undefined`:
 * see {@link missingSystemPackage}.
 */
export function opensslMissing(): string | undefined {
  return missingSystemPackage("openssl", "apt-get install openssl", ["openssl", "version"]);
}

/** A CA and the certificates it signs, made with `openssl` (P-256, valid one day) in `dir`. */
export function makeTestCertificates(dir: string): TestCertificates {
  const p = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const ca = (name: string) =>
    openssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      p(`${name}.key`),
      "-out",
      p(`${name}.pem`),
      "-days",
      "1",
      "-subj",
      `/CN=tokenbroker test ${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
  const leaf = (name: string, signer: string, ext: string) => {
    openssl(["req", ...ec, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${name}`]);
    writeFileSync(p(`${name}.ext`), ext);
    openssl([
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p(`${signer}.pem`),
      "-CAkey",
      p(`${signer}.key`),
      "-set_serial",
      String(Date.now()),
      "-days",
      "1",
      "-out",
      p(`${name}.pem`),
      "-extfile",
      p(`${name}.ext`),
    ]);
  };
  ca("ca");
  ca("stranger-ca");
  leaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  leaf("client", "ca", "extendedKeyUsage=clientAuth\n");
  leaf("stranger", "stranger-ca", "extendedKeyUsage=clientAuth\n");
  const read = (name: string) => readFileSync(p(name));
  return {
    ca: read("ca.pem"),
    serverCert: read("server.pem"),
    serverKey: read("server.key"),
    clientCert: read("client.pem"),
    clientKey: read("client.key"),
    strangerCert: read("stranger.pem"),
    strangerKey: read("stranger.key"),
    paths: { ca: p("ca.pem"), serverCert: p("server.pem"), serverKey: p("server.key") },
  };
}
