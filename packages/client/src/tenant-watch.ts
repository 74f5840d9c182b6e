import { Code, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import { ConnectionState, type Token, type TokenService, type WatchTokenResponse } from "./gen/tokenbroker/v1/token_service_pb.js";
import { backoffDelay, sleep, type ReconnectOptions } from "./backoff.js";
import { isNewer, isValidFor, toTokenInfo, type CachedToken, type TokenInfo } from "./token-info.js";

/** Options for {@link TenantWatch}. */
export interface TenantWatchOptions {
  /** The broker. */
  client: Client<typeof TokenService>;
  /** The tenant whose token set is watched. */
  tenantId: string;
  reconnect: ReconnectOptions;
  /** Headers sent with every call (e.g. an API key). */
  headers: Record<string, string> | undefined;
  /** Called when the stream gives up for good (NOT_FOUND and the like), so the owner forgets this watch. */
  onGone: () => void;
}

/** Stream errors that reconnecting cannot cure: the watch ends and the error goes to its callers. */
const permanent = new Set<Code>([Code.NotFound, Code.InvalidArgument, Code.Unauthenticated, Code.PermissionDenied, Code.Unimplemented]);

/**
 * The token of one tenant, kept current by one `WatchToken` stream.
 *
 * Callers are answered from the cache while the stream is live and the token
 * valid long enough. The first call waits for the stream's first message.
 * When the stream drops it is reopened with backoff; meanwhile the cache is
 * not trusted until a `GetToken` call (shared by concurrent callers) has
 * confirmed it. A NEEDS_REAUTHORIZATION state rejects every caller at once.
 */
export class TenantWatch {
  private cached: CachedToken | undefined;
  /** The reason callers are refused while the connection needs re-authorisation. */
  private reauthMessage: string | undefined;
  /** True while the cache is known current: the stream is live, or an RPC answered since it dropped. */
  private current = false;
  /** Pending until the first stream attempt delivered a message or failed. */
  private opening: Promise<void> | undefined;
  private openingDone: () => void = () => {};
  /** Set when the stream ended for good. */
  private gone: ConnectError | undefined;
  private rpc: Promise<TokenInfo> | undefined;
  private readonly reports = new Map<string, Promise<TokenInfo>>();
  private readonly stop = new AbortController();
  /** Resolves when the stream and its reconnect timer are gone. */
  readonly done: Promise<void>;

  constructor(private readonly options: TenantWatchOptions) {
    this.opening = new Promise<void>((resolve) => {
      this.openingDone = () => {
        this.opening = undefined;
        resolve();
      };
    });
    this.done = this.run();
  }

  /** A token valid for `minValidForMs`: from the cache, or else from one shared `GetToken` call. */
  async token(minValidForMs: number): Promise<TokenInfo> {
    if (this.opening) await this.opening;
    this.check();
    const cached = this.cached;
    if (this.current && cached && isValidFor(cached, minValidForMs, Date.now())) return cached.info;
    this.rpc ??= this.getByRpc(minValidForMs).finally(() => (this.rpc = undefined));
    return this.rpc;
  }

  /**
   * `rejected` got 401 from Xero: a newer cached token if there is one, or else
   * the token `ReportExpired` returns (one call per rejected token, shared).
   */
  async replace(rejected: string): Promise<TokenInfo> {
    this.check();
    const cached = this.cached;
    if (cached && cached.info.accessToken !== rejected && cached.info.expiresAt.getTime() > Date.now()) return cached.info;
    let report = this.reports.get(rejected);
    if (!report) {
      report = this.reportExpired(rejected).finally(() => this.reports.delete(rejected));
      this.reports.set(rejected, report);
    }
    return report;
  }

  /** Cancels the stream, the reconnect timer and calls in flight. */
  close(): Promise<void> {
    this.stop.abort();
    this.openingDone();
    return this.done;
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stop.signal.aborted) {
      const call = new AbortController();
      const cancel = () => call.abort();
      this.stop.signal.addEventListener("abort", cancel, { once: true });
      let error: ConnectError;
      try {
        const stream = this.options.client.watchToken({ selector: this.selector() }, this.callOptions(call.signal));
        for await (const message of stream) {
          attempt = 0;
          this.onMessage(message);
        }
        error = new ConnectError("the WatchToken stream ended", Code.Unavailable);
      } catch (e) {
        error = ConnectError.from(e);
      } finally {
        this.stop.signal.removeEventListener("abort", cancel);
        call.abort();
      }
      this.current = false;
      if (this.stop.signal.aborted) break;
      if (permanent.has(error.code)) {
        this.gone = error;
        this.options.onGone();
        break;
      }
      // The stream could not open because the refresh token was rejected: say so until it reopens.
      if (error.code === Code.FailedPrecondition) this.reauthMessage = error.rawMessage;
      this.openingDone();
      await sleep(backoffDelay(attempt++, this.options.reconnect), this.stop.signal);
    }
    this.openingDone();
  }

  private onMessage(message: WatchTokenResponse): void {
    if (message.state === ConnectionState.NEEDS_REAUTHORIZATION) {
      this.reauthMessage = reauthorizationMessage(this.options.tenantId, this.cached?.info.connectionId);
      this.cached = undefined;
    } else {
      const info = message.state === ConnectionState.ACTIVE ? toTokenInfo(message.token) : undefined;
      if (!info) return;
      this.reauthMessage = undefined;
      this.remember(info);
    }
    this.current = true;
    this.openingDone();
  }

  private async getByRpc(minValidForMs: number): Promise<TokenInfo> {
    const ms = Math.max(0, Math.ceil(minValidForMs));
    const minValidFor = { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
    const response = await this.options.client.getToken({ selector: this.selector(), minValidFor }, this.callOptions(this.stop.signal));
    return this.accept(response.token);
  }

  private async reportExpired(rejected: string): Promise<TokenInfo> {
    const response = await this.options.client.reportExpired(
      { selector: this.selector(), accessToken: rejected },
      this.callOptions(this.stop.signal),
    );
    return this.accept(response.token);
  }

  /** Caches a token an RPC returned; returns the newest token known. */
  private accept(token: Token | undefined): TokenInfo {
    const info = toTokenInfo(token);
    if (!info) throw new ConnectError("tokenbroker answered without a token", Code.Internal);
    this.remember(info);
    this.current = true;
    return this.cached?.info ?? info;
  }

  private remember(info: TokenInfo): void {
    const cached = this.cached;
    if (!isNewer(info, cached?.info)) return;
    const firstSeenAt = cached?.info.accessToken === info.accessToken ? cached.firstSeenAt : Date.now();
    this.cached = { info, firstSeenAt };
  }

  private check(): void {
    if (this.stop.signal.aborted) throw new ConnectError("the token client is closed", Code.Canceled);
    if (this.gone) throw new ConnectError(this.gone.rawMessage, this.gone.code);
    if (this.reauthMessage !== undefined) throw new ConnectError(this.reauthMessage, Code.FailedPrecondition);
  }

  private selector() {
    return { case: "tenantId" as const, value: this.options.tenantId };
  }

  private callOptions(signal: AbortSignal): CallOptions {
    return this.options.headers ? { signal, headers: this.options.headers } : { signal };
  }
}

/** What callers are told while a connection needs re-authorisation. */
function reauthorizationMessage(tenantId: string, connectionId: string | undefined): string {
  const which = connectionId ? `connection ${connectionId} (tenant ${tenantId})` : `the connection of tenant ${tenantId}`;
  return (
    `${which} needs re-authorisation: Xero rejected its refresh token. ` +
    "A person must consent again and import the new refresh token with `tokenbroker import`."
  );
}
