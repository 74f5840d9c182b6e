import { createHash, generateKeyPair, sign, verify, type KeyObject } from "node:crypto";

/** A JSON Web Key as published in the JWKS (public part only). */
export interface PublicJwk {
  kty: "RSA";
  n: string;
  e: string;
  kid: string;
  use: "sig";
  alg: "RS256";
}

/** Claims of a JWT: any JSON object. */
export type JwtClaims = Record<string, unknown>;

/** Signs and verifies RS256 JWTs with one RSA key pair. */
export interface JwtSigner {
  /** Key id put in every JWT header and in the JWK. */
  readonly kid: string;
  /** The JWKS document (`{ keys: [...] }`) with the public key. */
  jwks(): { keys: PublicJwk[] };
  /** Returns a compact RS256 JWT carrying `claims`. */
  sign(claims: JwtClaims): string;
  /**
   * Returns the claims when `token` is a JWT this signer signed (header alg
   * RS256 and kid match, signature valid), otherwise undefined. Does not look
   * at `exp`: the caller decides what expired means with its own clock.
   */
  verify(token: string): JwtClaims | undefined;
}

/** Options for {@link createJwtSigner}. */
export interface JwtSignerOptions {
  /** RSA modulus length in bits; default 2048. */
  modulusLength?: number;
}

/**
 * RSA key pairs by modulus length, generated once per process: one costs about 140 ms of CPU, and the test
 * suite starts hundreds of fakes. Fakes sharing a key still refuse each other's access tokens (each accepts only
 * the ones it minted), and their id tokens name their own issuer.
 */
const keyPairs = new Map<number, Promise<{ privateKey: KeyObject; publicKey: KeyObject }>>();

function rsaKeyPair(modulusLength: number): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  let pair = keyPairs.get(modulusLength);
  if (!pair) {
    pair = new Promise((resolve, reject) =>
      generateKeyPair("rsa", { modulusLength }, (err, pub, priv) => (err ? reject(err) : resolve({ privateKey: priv, publicKey: pub }))),
    );
    pair.catch(() => keyPairs.delete(modulusLength));
    keyPairs.set(modulusLength, pair);
  }
  return pair;
}

/** Returns a signer for an RSA key pair (generated at the first call of the process for that modulus length). */
export async function createJwtSigner(options: JwtSignerOptions = {}): Promise<JwtSigner> {
  const { privateKey, publicKey } = await rsaKeyPair(options.modulusLength ?? 2048);
  const exported = publicKey.export({ format: "jwk" });
  const n = String(exported.n);
  const e = String(exported.e);
  const kid = thumbprint(n, e);
  const jwk: PublicJwk = { kty: "RSA", n, e, kid, use: "sig", alg: "RS256" };
  const header = base64url(JSON.stringify({ alg: "RS256", kid, typ: "JWT" }));

  return {
    kid,
    jwks: () => ({ keys: [{ ...jwk }] }),
    sign(claims) {
      const input = `${header}.${base64url(JSON.stringify(claims))}`;
      const signature = sign("sha256", Buffer.from(input), privateKey);
      return `${input}.${signature.toString("base64url")}`;
    },
    verify(token) {
      const parts = token.split(".");
      if (parts.length !== 3) return undefined;
      const [h, p, s] = parts as [string, string, string];
      const head = parseJson(h);
      if (head?.["alg"] !== "RS256" || head["kid"] !== kid) return undefined;
      const ok = verify("sha256", Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, "base64url"));
      return ok ? parseJson(p) : undefined;
    },
  };
}

/** Decodes a JWT's payload without checking anything (for tests and logs-free debugging). */
export function decodeJwtClaims(token: string): JwtClaims | undefined {
  const payload = token.split(".")[1];
  return payload === undefined ? undefined : parseJson(payload);
}

function base64url(text: string): string {
  return Buffer.from(text).toString("base64url");
}

function parseJson(segment: string): JwtClaims | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as JwtClaims) : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 7638 JWK thumbprint: a stable key id derived from the key itself. */
function thumbprint(n: string, e: string): string {
  return createHash("sha256")
    .update(JSON.stringify({ e, kty: "RSA", n }))
    .digest("base64url");
}
