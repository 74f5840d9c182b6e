import { randomUUID } from "node:crypto";
import { customReauthorizationAdvice } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Store } from "../store/store.js";
import type { TokenState } from "../store/token-set-store.js";
import { REFRESH_TOKEN_LIFETIME_MS } from "../token-set.js";
import type { RefreshEvent } from "../broker/refresh-events.js";
import type { ConnectionEvent } from "./connection-event.js";
import { ConnectionMonitor, type Transition } from "./connection-monitor.js";
import { createWebhookSender, type WebhookSender, type WebhookSenderOptions } from "./webhook-sender.js";

/** Options for failure notifications. */
export interface NotifierOptions {
  /** Where events are POSTed (`TOKENBROKER_WEBHOOK_URL`); without it events are only logged. */
  webhookUrl?: URL | undefined;
  /** The signature key (`TOKENBROKER_WEBHOOK_SECRET`); required with `webhookUrl`. */
  webhookSecret?: string | undefined;
  /** Warn this many days before an unrefreshed refresh token dies (default 7). */
  warnDays?: number;
  /** Delivery tuning (attempts, backoff, timeout). */
  delivery?: Pick<WebhookSenderOptions, "attempts" | "retryBaseMs" | "timeoutMs">;
}

/** Turns transitions of connections into log warnings and signed webhooks. */
export interface Notifier {
  /** Feed every scheduler pass here (it is how transitions are noticed). */
  onPass(states: readonly TokenState[], now: number): void;
  /**
   * Feed every refresh event here: a refresh token spent by another client (`spentByAnotherClient`) raises the
   * alarm, once per refused refresh: an error log line `refresh_token_spent_elsewhere` and a webhook.
   */
  onRefresh(event: RefreshEvent): void;
  /** Resolves when every event noticed so far has been delivered or given up on. */
  idle(): Promise<void>;
  /** Stops retrying and waits for deliveries in flight to end. */
  close(): Promise<void>;
}

const DAY_MS = 24 * 60 * 60_000;

/**
 * Watches connections for a needed re-authorisation, a refresh token close to
 * its 60-day death, and a recovery; logs a warning and POSTs a signed webhook
 * for each, once per transition.
 */
export function createNotifier(options: NotifierOptions & { store: Pick<Store, "connections">; logger: Logger }): Notifier {
  const { store, logger } = options;
  const monitor = new ConnectionMonitor((options.warnDays ?? 7) * DAY_MS);
  if (options.webhookUrl && !options.webhookSecret) throw new Error("a webhook URL needs a webhook secret");
  const sender: WebhookSender | undefined =
    options.webhookUrl && options.webhookSecret
      ? createWebhookSender({ url: options.webhookUrl, secret: options.webhookSecret, ...options.delivery })
      : undefined;
  const stop = new AbortController();
  const pending = new Set<Promise<void>>();

  async function announce(transition: Transition, now: number): Promise<void> {
    const event = await describe(transition, now);
    if (transition.type === "connection.refresh_token_spent_elsewhere") {
      logger.error({ event: "refresh_token_spent_elsewhere", type: event.type, connectionId: event.connection.id }, event.message);
    } else {
      logger.warn(
        {
          event: "notification",
          type: event.type,
          connectionId: event.connection.id,
          refreshTokenExpiresAt: event.connection.refreshTokenExpiresAt,
        },
        event.message,
      );
    }
    if (!sender) return;
    const delivery = await sender.send(JSON.stringify(event), stop.signal);
    const fields = { event: "webhook", type: event.type, connectionId: event.connection.id, eventId: event.id, ...delivery };
    if (delivery.delivered) logger.info(fields, "webhook delivered");
    else logger.warn(fields, `webhook delivery failed after ${delivery.attempts} attempt(s)`);
  }

  async function describe({ type, state }: Transition, now: number): Promise<ConnectionEvent> {
    const summary = (await store.connections.listConnections().catch(() => [])).find((c) => c.connectionId === state.connectionId);
    const dies = state.refreshTokenIssuedAt + REFRESH_TOKEN_LIFETIME_MS;
    const id = state.connectionId;
    const message =
      type === "connection.needs_reauthorization" && summary?.custom
        ? `connection ${id} ${customReauthorizationAdvice(summary.custom)}`
        : type === "connection.refresh_token_spent_elsewhere"
          ? `connection ${id}: Xero refused its refresh token although tokenbroker never used it, and the grant is still alive: ` +
            "another client holding a copy of this refresh token spent it. Look for an old script, a second integration or a " +
            "copied database that still holds the refresh token and stop it; then re-authorise the connection (the status page's " +
            '"Re-authorise", or `tokenbroker connect`). tokenbroker does not retry it.'
          : type === "connection.needs_reauthorization"
            ? `connection ${id} needs re-authorisation: Xero rejected its refresh token. Pipe a new refresh token of the same Xero user into \`tokenbroker import\``
            : type === "connection.recovered"
              ? `connection ${id} is active again`
              : `connection ${id}: its refresh token dies in ${Math.max(0, (dies - now) / DAY_MS).toFixed(1)} days unless it is refreshed`;
    return {
      id: randomUUID(),
      type,
      occurredAt: new Date(now).toISOString(),
      message,
      connection: {
        id,
        state: state.state,
        version: state.version,
        refreshTokenIssuedAt: new Date(state.refreshTokenIssuedAt).toISOString(),
        refreshTokenExpiresAt: new Date(dies).toISOString(),
        tenants: (summary?.tenants ?? []).map((t) => ({ tenantId: t.tenantId, ...(t.tenantName ? { tenantName: t.tenantName } : {}) })),
        ...(summary?.lastError ? { lastError: summary.lastError } : {}),
      },
    };
  }

  async function idle(): Promise<void> {
    while (pending.size > 0) await Promise.allSettled([...pending]);
  }

  function start(transition: Transition | (() => Promise<Transition>), now: number): void {
    const p = (async () => announce(typeof transition === "function" ? await transition() : transition, now))().catch((e: unknown) =>
      logger.error({ event: "notification", err: { message: e instanceof Error ? e.message : String(e) } }, "notification failed"),
    );
    pending.add(p);
    void p.finally(() => pending.delete(p));
  }

  return {
    onPass(states, now) {
      if (stop.signal.aborted) return;
      for (const transition of monitor.observe(states, now)) start(transition, now);
    },
    onRefresh(event) {
      if (stop.signal.aborted || !event.spentByAnotherClient) return;
      const type = "connection.refresh_token_spent_elsewhere";
      start(async () => {
        const summary = (await store.connections.listConnections().catch(() => [])).find((c) => c.connectionId === event.connectionId);
        const state: TokenState = {
          connectionId: event.connectionId,
          version: event.version,
          state: "needs_reauthorization",
          expiresAt: summary?.expiresAt ?? 0,
          obtainedAt: 0,
          refreshTokenIssuedAt: summary?.refreshTokenIssuedAt ?? 0,
        };
        return { type, state };
      }, Date.now());
    },
    idle,
    async close() {
      stop.abort();
      await idle();
    },
  };
}
