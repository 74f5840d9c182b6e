import { Agent } from "node:http";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** Options for {@link createClientTransport}. */
export interface ClientTransportOptions {
  /** The broker, e.g. `http://127.0.0.1:50051`. */
  baseUrl: string;
  /** "grpc": gRPC over HTTP/2; "connect": the Connect protocol over HTTP/1.1 (passes HTTP/1.1-only proxies). */
  protocol: "grpc" | "connect";
  interceptors: Interceptor[];
}

/** A transport whose connections the owner closes. */
export interface OwnedTransport {
  readonly transport: Transport;
  /** Closes every connection the transport opened. */
  close(): void;
}

/**
 * A transport to the broker with its own connection pool (an HTTP/2 session
 * or an HTTP/1.1 keep-alive agent), so that closing the client closes its
 * connections instead of leaving them to an idle timeout.
 */
export function createClientTransport(options: ClientTransportOptions): OwnedTransport {
  const { baseUrl, interceptors } = options;
  if (options.protocol === "connect") {
    const agent = new Agent({ keepAlive: true });
    return {
      transport: createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        useBinaryFormat: true,
        interceptors,
        nodeOptions: { agent },
      }),
      close: () => agent.destroy(),
    };
  }
  const sessionManager = new Http2SessionManager(baseUrl);
  return {
    transport: createGrpcTransport({ baseUrl, interceptors, sessionManager }),
    close: () => sessionManager.abort(),
  };
}
