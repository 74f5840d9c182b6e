import pg from "pg";
import type { Logger } from "../logger.js";

/** Waits before listening again after the listening connection dropped, ms: doubling up to the last. */
const RELISTEN_DELAYS_MS = [50, 100, 250, 500, 1000, 2000];

/** Options for {@link ChangeListener}. */
export interface ChangeListenerOptions {
  /** How to connect (the pool's settings). */
  config: pg.ClientConfig;
  /** The channel to LISTEN on. */
  channel: string;
  /** How often the connection is checked with a query, and how long its answer may take, ms. */
  heartbeatMs: number;
  /** Hears of drops and returns (never the password: see `describe`). */
  logger: Logger;
  /** An error's message as it may be logged (without the URL's password). */
  describe(e: unknown): string;
  /** Each notification's payload, in order. */
  onPayload(payload: string): void;
  /** Listening: at the start, and each time the connection is back after a drop (whatever was sent meanwhile is lost). */
  onUp(): void;
  /** No longer listening: notifications sent from now on are not heard until {@link onUp}. */
  onDown(): void;
}

/**
 * One connection to PostgreSQL that LISTENs on a channel, kept open: when it
 * drops (a restart, a failover) or stops answering the query sent on it every
 * `heartbeatMs` (a network cut without a reset, which TCP alone notices only
 * after minutes), it tells `onDown` and connects again with backoff, then
 * tells `onUp`. Internal to the PostgreSQL store.
 */
export class ChangeListener {
  private client: pg.Client | undefined;
  private relistenTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;

  constructor(private readonly options: ChangeListenerOptions) {}

  /** Connects and listens; throws if the first connection fails (nothing is retried then). */
  async start(): Promise<void> {
    await this.listen();
  }

  /** Stops listening for good. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.relistenTimer);
    clearInterval(this.heartbeatTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async listen(): Promise<void> {
    const { config, channel } = this.options;
    const client = new pg.Client(config);
    client.on("error", (e) => this.lost(client, e));
    client.on("end", () => this.lost(client));
    client.on("notification", (n) => {
      if (n.channel === channel && n.payload !== undefined) this.options.onPayload(n.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${channel}`);
    } catch (e) {
      client.removeAllListeners("end");
      await client.end().catch(() => {});
      throw e;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.attempt = 0;
    this.heartbeat(client);
    this.options.onUp();
  }

  /** Checks the connection every heartbeatMs: one that has not answered the previous check by then counts as lost. */
  private heartbeat(client: pg.Client): void {
    clearInterval(this.heartbeatTimer);
    let pending = false;
    this.heartbeatTimer = setInterval(() => {
      if (this.client !== client) return;
      if (pending) {
        this.lost(client, new Error(`no answer from the database in ${this.options.heartbeatMs} ms`));
        return;
      }
      pending = true;
      client.query("SELECT 1").then(
        () => (pending = false),
        (e: Error) => this.lost(client, e),
      );
    }, this.options.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  private lost(client: pg.Client, e?: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    clearInterval(this.heartbeatTimer);
    client.end().catch(() => {});
    this.options.onDown();
    if (this.closed) return;
    this.options.logger.warn(
      { event: "database_listen_lost", ...(e ? { error: this.options.describe(e) } : {}) },
      "lost the connection that hears other brokers' changes: reading through to the database until it is back",
    );
    this.relisten();
  }

  private relisten(): void {
    const delay = RELISTEN_DELAYS_MS[Math.min(this.attempt++, RELISTEN_DELAYS_MS.length - 1)]!;
    this.relistenTimer = setTimeout(() => {
      this.listen().then(
        () => this.options.logger.info({ event: "database_listen_back" }, "hearing other brokers' changes again"),
        () => {
          if (!this.closed) this.relisten();
        },
      );
    }, delay);
    this.relistenTimer.unref();
  }
}
