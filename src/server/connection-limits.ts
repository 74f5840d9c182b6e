/**
 * What one client may hold on the broker's port: streams, request bytes,
 * time without headers or without traffic, connections per address.
 */
export interface ConnectionLimits {
  /** HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: open streams per connection (default 1,000). */
  maxConcurrentStreams: number;
  /**
   * Request bytes an HTTP/2 connection may hold: the bytes received on its
   * streams still open (default 1 MiB). The stream whose bytes go over it is
   * reset with ENHANCE_YOUR_CALM, which frees them.
   */
  maxBufferedBytes: number;
  /** A connection that has not sent complete request headers this long after it opened is closed, ms (default 10,000). */
  headersTimeoutMs: number;
  /**
   * A connection without traffic this long is closed, ms (default 120,000),
   * unless it carries an authenticated WatchToken stream or a waiting long poll; an HTTP/1.1
   * connection also when no next request came this long after a response.
   */
  idleTimeoutMs: number;
  /** Open connections per client IP address; the next one is closed at once (default 1,000). */
  maxConnectionsPerAddress: number;
  /**
   * A request whose body has not wholly arrived this long after its headers
   * is dropped, ms (default 30,000): its HTTP/2 stream is reset (CANCEL), its
   * HTTP/1.1 connection closed. Bytes dribbled to an open path (health) keep
   * nothing past it, however steadily they come.
   */
  requestTimeoutMs: number;
}

/** The defaults of {@link ConnectionLimits}. */
export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  maxConcurrentStreams: 1000,
  maxBufferedBytes: 1024 * 1024,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 120_000,
  maxConnectionsPerAddress: 1000,
  requestTimeoutMs: 30_000,
});

/** The defaults with `given` applied. */
export function connectionLimits(given: Partial<ConnectionLimits> | undefined): ConnectionLimits {
  const limits = { ...DEFAULT_CONNECTION_LIMITS };
  for (const [name, value] of Object.entries(given ?? {}) as Array<[keyof ConnectionLimits, number | undefined]>) {
    if (value !== undefined) limits[name] = value;
  }
  return limits;
}
