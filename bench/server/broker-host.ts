import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { ManualClock, systemClock } from "../../src/clock.js";
import { createTokenCipher } from "../../src/crypto/token-cipher.js";
import { forkHost, type Host } from "../ipc.js";
import type { UpstreamHostApi } from "../upstream/main.js";
import { importRefreshToken } from "../../src/importer.js";
import { createLogger } from "../../src/logger.js";
import { startBrokerServer, type BrokerServer, type BrokerServerOptions } from "../../src/server/broker-server.js";
import { createAuditLog, type AuditLog } from "../../src/audit/audit-log.js";
import { generateApiKey, hashApiKey } from "../../src/auth/api-key.js";
import { createAuthenticator } from "../../src/auth/authenticator.js";
import { openStore } from "../../src/store/open-store.js";
import type { Store } from "../../src/store/store.js";
import { createOidcIdentityServer } from "../../src/upstream/oidc-identity-server.js";
import { identityServerOptions } from "@tokenbroker/fake-xero";

/** Options for {@link startBenchBroker}. */
export interface BenchBrokerOptions {
  /** "system" runs on real time with the scheduler on, as `tokenbroker serve`; "manual" lets the bench expire tokens at will (scheduler off). */
  clock: "system" | "manual";
  /** API keys required and an audit log, as `tokenbroker serve` runs by default; one key is made for the bench's callers. */
  auth?: boolean;
  /** Where the store is, as `--db` takes it (a `postgres://` URL of an empty database); by default a new SQLite file. */
  store?: string;
}

/** A broker with a fake Xero and one imported grant, in this process. */
export interface BenchBroker {
  readonly url: string;
  readonly tenantId: string;
  readonly connectionId: string;
  /** The key made for the callers (with `auth`). */
  readonly apiKey: string | undefined;
  /** The fake Xero, in a process of its own. */
  readonly upstream: Host<UpstreamHostApi>;
  readonly server: BrokerServer;
  /** How long each refresh took since the last call, as the broker logged it (ms). */
  takeRefreshDurations(): number[];
  /** Moves the manual clock past the stored token's expiry. */
  expireToken(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts the real broker server (`startBrokerServer`, as `tokenbroker serve`
 * wires it, without API keys unless `auth`) on a loopback port, against a fake
 * Xero in a process of its own, with tokens encrypted in a new SQLite file in
 * a temporary directory (or the store at `options.store`) and one imported
 * grant of two tenants.
 */
export async function startBenchBroker(options: BenchBrokerOptions): Promise<BenchBroker> {
  const clock = options.clock === "manual" ? new ManualClock() : systemClock;
  const upstream = await forkHost<UpstreamHostApi>(new URL("../upstream/main.js", import.meta.url));
  const fake = await upstream.call("start").catch(async (e: unknown) => {
    await upstream.stop();
    throw e;
  });
  const dir = mkdtempSync(join(tmpdir(), "tokenbroker-bench-"));
  let store: Store | undefined;
  let audit: AuditLog | undefined;
  try {
    // Tokens encrypted at rest, as `tokenbroker serve` stores them.
    store = await openStore(options.store ?? join(dir, "bench.db"), { clock, encryption: createTokenCipher([randomBytes(32)]) });
    const identity = createOidcIdentityServer({ ...identityServerOptions(fake), clock });
    const refreshToken = await upstream.call("addGrant", ["Bench Org A", "Bench Org B"]);
    const imported = await importRefreshToken(store, identity, refreshToken);
    const tenantId = imported.tenants[0]?.tenantId;
    if (!tenantId) throw new Error("the fake Xero listed no tenants");
    // The broker logs one line per refresh with its duration: keep those, drop the rest.
    const refreshDurations: number[] = [];
    const logLines = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString("utf8").split("\n")) {
          if (!line.includes('"event":"refresh"')) continue;
          const entry = JSON.parse(line) as { outcome?: string; durationMs?: number };
          if (entry.outcome === "ok" && typeof entry.durationMs === "number") refreshDurations.push(entry.durationMs);
        }
        done();
      },
    });
    const logger = createLogger({ level: "info", destination: logLines });
    let apiKey: string | undefined;
    let security: Pick<BrokerServerOptions, "auth" | "audit"> = {};
    if (options.auth) {
      const keys = store.apiKeys;
      apiKey = generateApiKey();
      await keys.create({ name: "bench", keyHash: hashApiKey(apiKey), tenants: "*", role: "client", createdAt: Date.now() });
      audit = createAuditLog({ sink: store.auditLog });
      security = { auth: { authenticator: createAuthenticator({ keys }) }, audit };
    }
    const server = await startBrokerServer({ port: 0, store, identity, clock, logger, ...security });
    if (options.clock === "manual") await server.scheduler.stop();
    const opened = store;
    return {
      url: server.url,
      tenantId,
      connectionId: imported.connectionId,
      apiKey,
      upstream,
      server,
      takeRefreshDurations: () => refreshDurations.splice(0),
      async expireToken() {
        const token = await opened.tokens.getToken(imported.connectionId);
        if (!(clock instanceof ManualClock) || !token) throw new Error("expireToken needs the manual clock");
        clock.set(token.expiresAt + 1000);
      },
      async close() {
        await server.close();
        await audit?.close();
        await opened.close();
        await upstream.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await store?.close();
    await upstream.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
