import { sleep } from "../broker/abortable.js";
import { backoffDelay } from "../broker/backoff.js";
import { SIGNATURE_HEADER, signWebhook } from "./webhook-signature.js";

/** Options for {@link createWebhookSender}. */
export interface WebhookSenderOptions {
  /** Where events are POSTed. */
  url: URL;
  /** The HMAC key of the signature header. */
  secret: string;
  /** Attempts per event (default 5). */
  attempts?: number;
  /** First retry delay, ms (default 1000); doubles each attempt, with jitter. */
  retryBaseMs?: number;
  /** Per attempt, ms (default 10 000). */
  timeoutMs?: number;
}

/** How a delivery ended. */
export interface WebhookDelivery {
  delivered: boolean;
  attempts: number;
  /** The last HTTP status, if the receiver answered. */
  status?: number;
  /** Why the last attempt failed, if it did (no body, no secret). */
  error?: string;
}

/** POSTs signed JSON bodies; see {@link createWebhookSender}. */
export interface WebhookSender {
  /** Sends one body, retrying with backoff on network errors, timeouts, 408, 429 and 5xx. */
  send(body: string, signal?: AbortSignal): Promise<WebhookDelivery>;
}

/**
 * Sends webhook deliveries: `content-type: application/json` and a
 * `tokenbroker-signature` header, freshly signed at each attempt. Another 4xx
 * is final (a receiver refusing the signature will not change its mind).
 */
export function createWebhookSender(options: WebhookSenderOptions): WebhookSender {
  const attempts = Math.max(1, options.attempts ?? 5);
  const retryBaseMs = options.retryBaseMs ?? 1000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  return {
    async send(body, signal) {
      let last: WebhookDelivery = { delivered: false, attempts: 0 };
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (signal?.aborted) break;
        last = { attempts: attempt, ...(await attemptOnce(body, signal)) };
        if (last.delivered || !retryable(last.status)) return last;
        if (attempt < attempts) await sleep(backoffDelay(attempt - 1, retryBaseMs), signal);
      }
      return last;
    },
  };

  async function attemptOnce(body: string, signal: AbortSignal | undefined): Promise<Omit<WebhookDelivery, "attempts">> {
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const res = await fetch(options.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "tokenbroker-webhook",
          [SIGNATURE_HEADER]: signWebhook(body, options.secret, Date.now() / 1000),
        },
        body,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        redirect: "manual",
      });
      await res.body?.cancel();
      if (res.status >= 200 && res.status < 300) return { delivered: true, status: res.status };
      return { delivered: false, status: res.status, error: `HTTP ${res.status}` };
    } catch (e) {
      const error = timeout.aborted ? `no answer within ${timeoutMs} ms` : e instanceof Error ? (causeCode(e) ?? e.message) : "error";
      return { delivered: false, error };
    }
  }
}

/** Network errors (no status), 408, 429 and 5xx are worth another try. */
function retryable(status: number | undefined): boolean {
  return status === undefined || status === 408 || status === 429 || status >= 500;
}

/** fetch's "fetch failed" hides the reason (ECONNREFUSED…) in `cause`. */
function causeCode(e: Error): string | undefined {
  const code = (e.cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? `${e.message} (${code})` : undefined;
}
