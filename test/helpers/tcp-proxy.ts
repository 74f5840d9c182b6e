import { connect, createServer, type Socket } from "node:net";

/** A TCP forwarder on 127.0.0.1 that counts what passes and can cut every connection: a network between a store and its server. */
export interface TcpProxy {
  readonly port: number;
  /** Bytes sent from clients to the server so far. */
  readonly bytesUp: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Ends every open connection at once (as a failover or a network cut does); new ones are still let through unless `refuse`. */
  cut(options?: { refuse?: boolean }): void;
  /** Lets new connections through again after `cut({ refuse: true })`. */
  restore(): void;
  /** Stops passing bytes either way without closing anything (a network cut without a reset), until {@link thaw}. */
  freeze(): void;
  /** Ends a {@link freeze}: every connection open during it is cut (what was dropped cannot be replayed). */
  thaw(): void;
  /** Keeps what clients send instead of passing it on (a slow network or a busy sender), until {@link release}. */
  hold(): void;
  /** Ends a {@link hold}: what was kept is passed on, in order, and bytes flow again. */
  release(): void;
  close(): Promise<void>;
}

/** Starts a {@link TcpProxy} to `port` on 127.0.0.1. */
export async function startTcpProxy(port: number): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let refusing = false;
  let frozen = false;
  let held: Array<() => void> | undefined;
  let bytesUp = 0;
  let connections = 0;
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    connections++;
    const upstream = connect(port, "127.0.0.1");
    open.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    const passUp = (chunk: Buffer) => {
      bytesUp += chunk.length;
      upstream.write(chunk);
    };
    client.on("data", (chunk: Buffer) => {
      if (frozen) return;
      if (held) held.push(() => passUp(chunk));
      else passUp(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!frozen) client.write(chunk);
    });
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    get bytesUp() {
      return bytesUp;
    },
    get connections() {
      return connections;
    },
    cut(options = {}) {
      refusing = options.refuse ?? false;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore() {
      refusing = false;
    },
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      for (const s of open) s.destroy();
      open.clear();
    },
    hold() {
      held ??= [];
    },
    release() {
      const kept = held ?? [];
      held = undefined;
      for (const pass of kept) pass();
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
