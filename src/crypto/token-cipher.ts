import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

/** Prefix of every sealed value: format version 1. */
const PREFIX = "tbx1:";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The id of an encryption key as recorded with each sealed value: the first 8 hex digits of its SHA-256. */
export function keyIdOf(key: Buffer): string {
  return createHash("sha256").update(key).digest("hex").slice(0, 8);
}

/** A sealed value could not be opened: no key with its id, or it was altered. */
export class DecryptionError extends Error {
  override readonly name: string = "DecryptionError";
}

/**
 * Seals and opens secrets stored at rest (access, refresh and id tokens) with
 * AES-256-GCM. The first key of the keyring seals; every key of the keyring
 * opens, so that values sealed under an older key stay readable during a key
 * rotation. The keyring can be replaced while in use (a re-read key file).
 */
export interface TokenCipher {
  /** Id of the key new values are sealed under. */
  readonly keyId: string;
  /** Ids of every key that can open values, current first. */
  readonly keyIds: readonly string[];
  /**
   * Seals `plaintext` as `tbx1:<key id>:<base64url(iv | ciphertext | tag)>`.
   * `context` (e.g. column and row id) is authenticated but not stored: a
   * value copied to another row or column no longer opens.
   */
  seal(plaintext: string, context: string): string;
  /** Opens a sealed value; throws {@link DecryptionError} if no key fits or it was altered. */
  open(value: string, context: string): string;
  /** Replaces the keyring (first key seals). */
  setKeys(keys: readonly Buffer[]): void;
}

/** True when `value` is a sealed value rather than plain text. */
export function isSealed(value: string): boolean {
  return value.startsWith(PREFIX);
}

/** The key id recorded in a sealed value, or undefined for plain text. */
export function sealedKeyId(value: string): string | undefined {
  return isSealed(value) ? value.slice(PREFIX.length, PREFIX.length + 8) : undefined;
}

/** A cipher over `keys` (each 32 bytes; the first seals). */
export function createTokenCipher(keys: readonly Buffer[]): TokenCipher {
  let ring = toRing(keys);
  return {
    get keyId() {
      return ring[0]!.id;
    },
    get keyIds() {
      return ring.map((k) => k.id);
    },
    seal(plaintext, context) {
      const { id, key } = ring[0]!;
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      cipher.setAAD(Buffer.from(context, "utf8"));
      const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      return `${PREFIX}${id}:${Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64url")}`;
    },
    open(value, context) {
      const id = sealedKeyId(value);
      if (id === undefined) throw new DecryptionError("value is not sealed");
      const entry = ring.find((k) => k.id === id);
      if (!entry) throw new DecryptionError(`value is sealed under key ${id}, which is not configured`);
      const raw = Buffer.from(value.slice(PREFIX.length + 9), "base64url");
      if (raw.length < IV_BYTES + TAG_BYTES) throw new DecryptionError(`value sealed under key ${id} is truncated`);
      try {
        const decipher = createDecipheriv("aes-256-gcm", entry.key, raw.subarray(0, IV_BYTES));
        decipher.setAAD(Buffer.from(context, "utf8"));
        decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
        return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString("utf8");
      } catch {
        throw new DecryptionError(`value sealed under key ${id} fails authentication (altered, or moved from another row)`);
      }
    },
    setKeys(next) {
      ring = toRing(next);
    },
  };
}

function toRing(keys: readonly Buffer[]): Array<{ id: string; key: Buffer }> {
  if (keys.length === 0) throw new Error("a token cipher needs at least one key");
  for (const key of keys) if (key.length !== 32) throw new Error("encryption keys are 32 bytes (AES-256)");
  const seen = new Set<string>();
  const ring: Array<{ id: string; key: Buffer }> = [];
  for (const key of keys) {
    const id = keyIdOf(key);
    if (seen.has(id)) continue;
    seen.add(id);
    ring.push({ id, key: Buffer.from(key) });
  }
  return ring;
}
