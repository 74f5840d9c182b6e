import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** Counts a client's RPCs by method and can drop its streams, like a proxy cutting connections. */
export interface RpcProbe {
  /** Add to the client's interceptors. */
  readonly interceptor: Interceptor;
  /** Calls started so far for a method ("GetToken", "ReportExpired", "WatchToken"). */
  count(method: string): number;
  /** The request headers of the last call of a method. */
  headers(method: string): Headers | undefined;
  /** When each streaming call started (performance.now()). */
  readonly streamStarts: readonly number[];
  /** While true, new streaming calls fail at once with UNAVAILABLE. */
  blockStreams: boolean;
  /** Ends every open streaming call with UNAVAILABLE (the underlying HTTP stream is cancelled). */
  dropStreams(): void;
}

/** Creates an {@link RpcProbe}. */
export function createRpcProbe(): RpcProbe {
  const counts = new Map<string, number>();
  const lastHeaders = new Map<string, Headers>();
  const streamStarts: number[] = [];
  let open: AbortController[] = [];
  const probe: RpcProbe = {
    interceptor: (next) => async (req) => {
      counts.set(req.method.name, (counts.get(req.method.name) ?? 0) + 1);
      lastHeaders.set(req.method.name, new Headers(req.header));
      if (!req.stream) return next(req);
      streamStarts.push(performance.now());
      if (probe.blockStreams) throw new ConnectError("stream refused by the test", Code.Unavailable);
      const drop = new AbortController();
      open.push(drop);
      return next({ ...req, signal: AbortSignal.any([req.signal, drop.signal]) });
    },
    count: (method) => counts.get(method) ?? 0,
    headers: (method) => lastHeaders.get(method),
    streamStarts,
    blockStreams: false,
    dropStreams() {
      for (const c of open) c.abort(new ConnectError("stream dropped by the test", Code.Unavailable));
      open = [];
    },
  };
  return probe;
}
