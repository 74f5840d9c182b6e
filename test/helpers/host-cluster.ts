import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { generateEncryptionKey, parseEncryptionKey } from "../../src/crypto/encryption-keys.js";
import { createTokenCipher } from "../../src/crypto/token-cipher.js";
import { openStore } from "../../src/store/open-store.js";
import type { Store } from "../../src/store/store.js";
import type { TokenRecord } from "../../src/token-set.js";
import { HOST_ADDRESSES } from "./loopback-addresses.js";
import { runCli, startServe, type LogLine, type ServeProcess } from "./serve-process.js";

/** The identity server's settings, as the CLI reads them (TOKENBROKER_ISSUER, _CONNECTIONS_URL, _CLIENT_ID, _CLIENT_SECRET…). */
export type UpstreamEnv = Record<string, string>;

/** Options for {@link startHostCluster}. */
export interface HostClusterOptions {
  /** The shared store: a SQLite file path, or a `postgres://` URL (whatever `--db` takes). */
  location: string;
  upstream: UpstreamEnv;
  /** The refresh token `tokenbroker import` takes over before the hosts start. */
  refreshToken: string;
  /** More environment for every command and host (e.g. TOKENBROKER_LEASE_TTL_SECONDS). */
  env?: Record<string, string>;
  /** More `serve` flags for every host. */
  args?: string[];
  /** Run the hosts through the test-only serve entry with refresh pauses (see `SERVE_WITH_FAULT_HOOKS`). */
  faultHooks?: boolean;
}

/** The wire protocols the clients of a host speak, both over HTTP/2. */
export type HostProtocol = "grpc" | "connect";

/** Three `tokenbroker serve` processes on 127.0.0.1, .2 and .3, one port number, one shared store, API keys on. */
export interface HostCluster {
  readonly location: string;
  /** The environment every CLI command of this cluster runs with (holds the encryption key: never print it). */
  readonly env: NodeJS.ProcessEnv;
  /** The port every host listens on, each on its own address. */
  readonly port: number;
  /** Host `i` listens on `HOST_ADDRESSES[i]`; a host killed and restarted is replaced here. */
  readonly hosts: ServeProcess[];
  /** The imported connection. */
  readonly connectionId: string;
  /** Call options with the channels' API key (`authorization: Bearer …`). */
  readonly callOptions: { headers: { authorization: string } };
  /** A TokenService client of host `i` (one HTTP/2 connection per host and protocol, shared by every call). */
  client(i: number, protocol?: HostProtocol): Client<typeof TokenService>;
  /** The stored token set, read through a store of the test's own on the same location and key. */
  stored(): Promise<TokenRecord>;
  /** `tokenbroker import` of `refreshToken` while the hosts run (a new version of the same connection). */
  reimport(refreshToken: string): Promise<void>;
  /** Starts host `i` again on its address and the cluster's port (after it was killed). */
  restart(i: number): Promise<ServeProcess>;
  /** Every host's `refresh` log lines so far (killed hosts' included). */
  refreshEvents(): LogLine[];
  /** Kills the hosts, closes the clients and the test's store. The location is the caller's to remove. */
  close(): Promise<void>;
}

/**
 * Imports one grant into the store at `location`, creates an API key for every tenant, and starts three
 * `tokenbroker serve` processes sharing that store: the first on 127.0.0.1 and a free port, the others on
 * 127.0.0.2 and 127.0.0.3 and the same port, as three machines behind a load balancer would be configured.
 * Tokens are encrypted at rest and every call needs the key, as in production.
 */
export async function startHostCluster(options: HostClusterOptions): Promise<HostCluster> {
  const encryptionKey = generateEncryptionKey();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"] ?? "",
    ...options.upstream,
    TOKENBROKER_ENCRYPTION_KEY: encryptionKey,
    ...options.env,
  };
  const db = options.location;
  const connectionId = await importGrant(env, db, options.refreshToken);
  const created = await runCli(["keys", "create", "--db", db, "--name", "channels", "--tenants", "*"], env);
  const apiKey = created.stdout.trim();
  if (created.code !== 0 || !apiKey) throw new Error(`keys create failed (${created.code}): ${created.stderr}`);

  const serve = (address: string, port: number) =>
    startServe({ env, db, listen: `${address}:${port}`, secure: true, args: options.args ?? [], faultHooks: options.faultHooks ?? false });
  const first = await serve(HOST_ADDRESSES[0], 0);
  const port = Number(new URL(first.url).port);
  const hosts = [first, ...(await Promise.all(HOST_ADDRESSES.slice(1).map((address) => serve(address, port))))];
  const everStarted = [...hosts];

  const store: Store = await openStore(db, { encryption: createTokenCipher([parseEncryptionKey(encryptionKey, "the test's key")]) });
  const transports = new Map<string, Transport>();
  const clients = new Map<string, Client<typeof TokenService>>();
  const transportOf = (i: number, protocol: HostProtocol): Transport => {
    const key = `${i} ${protocol}`;
    let t = transports.get(key);
    if (!t) {
      const baseUrl = `http://${HOST_ADDRESSES[i]}:${port}`;
      t =
        protocol === "grpc"
          ? createGrpcTransport({ baseUrl })
          : createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true });
      transports.set(key, t);
    }
    return t;
  };

  return {
    location: db,
    env,
    port,
    hosts,
    connectionId,
    callOptions: { headers: { authorization: `Bearer ${apiKey}` } },
    client(i, protocol = "grpc") {
      const key = `${i} ${protocol}`;
      let c = clients.get(key);
      if (!c) {
        c = createClient(TokenService, transportOf(i, protocol));
        clients.set(key, c);
      }
      return c;
    },
    async stored() {
      const record = await store.tokens.getToken(connectionId);
      if (!record) throw new Error(`no token set stored for ${connectionId}`);
      return record;
    },
    async reimport(refreshToken) {
      const id = await importGrant(env, db, refreshToken);
      if (id !== connectionId) throw new Error(`the import made connection ${id}, not ${connectionId}`);
    },
    async restart(i) {
      const host = await serve(HOST_ADDRESSES[i]!, port);
      hosts[i] = host;
      everStarted.push(host);
      return host;
    },
    refreshEvents: () => everStarted.flatMap((h) => h.logs()).filter((l) => l["event"] === "refresh"),
    async close() {
      await Promise.all(everStarted.map((h) => h.kill("SIGKILL")));
      transports.clear();
      clients.clear();
      await store.close();
    },
  };
}

/**
 * `tokenbroker import --json` of `refreshToken` into `db`; resolves with the connection id. An identity server
 * without a connections endpoint (oidc-provider) makes the import exit 1 after storing the token set: that
 * counts as imported.
 */
async function importGrant(env: NodeJS.ProcessEnv, db: string, refreshToken: string): Promise<string> {
  const r = await runCli(["import", "--db", db, "--json"], env, `${refreshToken}\n`);
  let id: unknown;
  try {
    id = (JSON.parse(r.stdout) as { connectionId?: unknown }).connectionId;
  } catch {
    id = undefined;
  }
  if (typeof id !== "string" || (r.code !== 0 && !r.stderr.includes("the token set is stored"))) {
    throw new Error(`import failed (${r.code}): ${r.stderr}`);
  }
  return id;
}
