import { createHmac, timingSafeEqual } from "node:crypto";

/** The header that carries a webhook's signature. */
export const SIGNATURE_HEADER = "tokenbroker-signature";

/**
 * The signature header value for `body` sent at `timestampSeconds`:
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>`.
 */
export function signWebhook(body: string, secret: string, timestampSeconds: number): string {
  const t = Math.floor(timestampSeconds);
  return `t=${t},v1=${hmac(secret, `${t}.${body}`)}`;
}

/** Options for {@link verifyWebhookSignature}. */
export interface VerifyOptions {
  /** The receiver's time, unix seconds (default now). */
  nowSeconds?: number;
  /** Largest accepted age of the signature, seconds (default 300): a replayed old delivery is refused. */
  toleranceSeconds?: number;
}

/**
 * True when `header` is a valid signature of the raw `body` with `secret`,
 * made within the tolerance. Compares in constant time.
 */
export function verifyWebhookSignature(
  header: string | null | undefined,
  body: string,
  secret: string,
  options: VerifyOptions = {},
): boolean {
  if (!header) return false;
  const parts = header.split(",").map((p) => p.trim().split("="));
  const t = Number(parts.find(([k]) => k === "t")?.[1]);
  const signatures = parts.filter(([k, v]) => k === "v1" && v !== undefined).map(([, v]) => v!);
  if (!Number.isInteger(t) || signatures.length === 0) return false;
  const now = options.nowSeconds ?? Date.now() / 1000;
  if (Math.abs(now - t) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(hmac(secret, `${t}.${body}`), "hex");
  return signatures.some((s) => {
    const given = Buffer.from(s, "hex");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

function hmac(secret: string, text: string): string {
  return createHmac("sha256", secret).update(text).digest("hex");
}
