import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";

/** Where a raw client connects: the broker's URL, and for `https:` the CA that signed its certificate. */
export interface RawTarget {
  url: string;
  ca?: Buffer;
}

/** How long a raw exchange may take before the client gives up on it (the server is not required to answer). */
const EXCHANGE_MS = 5_000;

/**
 * Opens a socket to `target` (TLS with the given ALPN protocol for `https:`),
 * resolving once it can be written to.
 */
export function openSocket(target: RawTarget, alpn: "h2" | "http/1.1"): Promise<net.Socket> {
  const u = new URL(target.url);
  const port = Number(u.port);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve, reject) => {
    const socket =
      u.protocol === "https:"
        ? tls.connect({ host, port, ca: target.ca, ALPNProtocols: [alpn], servername: "localhost" }, () => resolve(socket))
        : net.connect({ host, port }, () => resolve(socket));
    socket.once("error", reject);
  });
}

/**
 * Writes `bytes` as they are on a fresh connection and collects everything
 * the server sends until it closes the connection, `idleMs` pass without a
 * byte, or {@link EXCHANGE_MS} pass. Never rejects once connected.
 */
export async function exchange(target: RawTarget, alpn: "h2" | "http/1.1", bytes: Buffer | Buffer[], idleMs = 300): Promise<Buffer> {
  const socket = await openSocket(target, alpn);
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    let idle: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(idle);
      clearTimeout(overall);
      socket.destroy();
      resolve(Buffer.concat(chunks));
    };
    const overall = setTimeout(finish, EXCHANGE_MS);
    const restartIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(finish, idleMs);
    };
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      restartIdle();
    });
    socket.on("error", finish);
    socket.on("close", finish);
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) socket.write(b);
    restartIdle();
  });
}

/** The status of the first HTTP/1.x response in `bytes`, or undefined if there is none. */
export function h1Status(bytes: Buffer): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(bytes.subarray(0, 32).toString("latin1"));
  return m ? Number(m[1]) : undefined;
}

/** The HTTP/2 connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** HTTP/2 frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

/** One HTTP/2 frame: 9-byte header (24-bit length, type, flags, 31-bit stream id) and payload. */
export function h2Frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0), length = payload.length): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(length & 0xffffff, 0, 3);
  head[3] = type & 0xff;
  head[4] = flags & 0xff;
  head.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
function hpackInt(value: number, n: number, first: number): Buffer {
  const max = (1 << n) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

function hpackString(s: string | Buffer): Buffer {
  const bytes = typeof s === "string" ? Buffer.from(s, "latin1") : s;
  return Buffer.concat([hpackInt(bytes.length, 7, 0), bytes]);
}

/**
 * A header block of literal fields without indexing and with new names
 * (RFC 7541 §6.2.2): any name and value, in any order, repeated or not, as
 * given. Nothing is checked, so invalid pseudo-headers can be sent.
 */
export function hpackLiterals(headers: ReadonlyArray<readonly [string | Buffer, string | Buffer]>): Buffer {
  return Buffer.concat(headers.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]));
}

/** END_STREAM and END_HEADERS of a HEADERS frame. */
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;

/** A client's opening: the preface and an empty SETTINGS frame. */
export function h2Opening(): Buffer {
  return Buffer.concat([H2_PREFACE, h2Frame(FrameType.SETTINGS, 0, 0)]);
}

/** Frames read back from a server: type, flags and stream id of each, in order (a trailing partial frame is dropped). */
export function readFrames(bytes: Buffer): Array<{ type: number; flags: number; streamId: number; payload: Buffer }> {
  const out = [];
  let offset = 0;
  while (bytes.length - offset >= 9) {
    const length = bytes.readUIntBE(offset, 3);
    if (bytes.length - offset - 9 < length) break;
    out.push({
      type: bytes[offset + 3]!,
      flags: bytes[offset + 4]!,
      streamId: bytes.readUInt32BE(offset + 5) & 0x7fffffff,
      payload: bytes.subarray(offset + 9, offset + 9 + length),
    });
    offset += 9 + length;
  }
  return out;
}

/**
 * One HTTP/2 request with Node's client (which decodes the answer): the
 * response headers, or the error the stream ended with. `headers` may carry
 * any `:path`, valid or not. With `doneWhen`, a stream that never ends (a
 * watch) is left as soon as its headers came and its body so far satisfies it,
 * instead of at the timeout.
 */
export async function h2Request(
  target: RawTarget,
  headers: http2.OutgoingHttpHeaders,
  body?: Uint8Array,
  timeoutMs = EXCHANGE_MS,
  doneWhen?: (body: Buffer) => boolean,
): Promise<{ headers?: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders; body: Buffer; error?: string }> {
  const session = http2.connect(target.url, target.ca ? { ca: target.ca, servername: "localhost" } : {});
  session.on("error", () => {});
  try {
    return await new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let got: http2.IncomingHttpHeaders | undefined;
      let trailers: http2.IncomingHttpHeaders | undefined;
      const timer = setTimeout(
        () => resolve({ ...(got ? { headers: got } : {}), body: Buffer.concat(chunks), error: "timeout" }),
        timeoutMs,
      );
      const req = session.request(headers, { endStream: body === undefined });
      req.on("response", (h) => (got = h));
      req.on("trailers", (t) => (trailers = t));
      req.on("data", (c: Buffer) => {
        chunks.push(c);
        if (got && doneWhen?.(Buffer.concat(chunks))) {
          clearTimeout(timer);
          resolve({ headers: got, body: Buffer.concat(chunks) });
        }
      });
      req.on("error", (e: Error) => {
        clearTimeout(timer);
        resolve({ ...(got ? { headers: got } : {}), body: Buffer.concat(chunks), error: e.message });
      });
      req.on("close", () => {
        clearTimeout(timer);
        resolve({ ...(got ? { headers: got } : {}), ...(trailers ? { trailers } : {}), body: Buffer.concat(chunks) });
      });
      if (body !== undefined) req.end(body);
    });
  } finally {
    session.destroy();
  }
}
