/**
 * The hostile neighbour of the bench, in a process of its own: one client
 * without a key that opens HTTP/2 streams with unfinished bodies and slow
 * sockets that never finish their headers, all from one address
 * (127.0.0.2, so that the per-address cap it meets is its own).
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { serveHost } from "../ipc.js";

/** Options of {@link floodHostApi.start}. */
export interface FloodOptions {
  url: string;
  /** HTTP/2 streams in all, spread over `connections`. */
  streams: number;
  connections: number;
  /** Bytes each stream sends of a body that declares more and never ends. */
  bodyBytes: number;
  /** TCP sockets that send half a request's headers, then a byte a second. */
  slowSockets: number;
  /** Where the flood comes from (default 127.0.0.2). */
  localAddress?: string;
}

/** What became of the flood so far. */
export interface FloodOutcome {
  streams: number;
  /** Answered with UNAUTHENTICATED (gRPC status 16). */
  unauthenticated: number;
  /** Answered with another status. */
  otherStatus: number;
  /** Reset by the server, by RST_STREAM code (7 REFUSED_STREAM, 11 ENHANCE_YOUR_CALM), or closed with their connection. */
  reset: Record<string, number>;
  /** Still open: neither answered nor reset. */
  open: number;
  /** HTTP/2 connections refused at once or closed by the server. */
  connectionsClosed: number;
  slowSockets: number;
  /** Slow sockets the server closed. */
  socketsClosed: number;
  /** Slow sockets closed within 5 s of connecting, half the header timeout: over the per-address cap. */
  socketsRefused: number;
  /** Seconds from the start to the last slow socket closed. */
  lastSocketClosedS: number;
}

const sessions: http2.ClientHttp2Session[] = [];
const sockets: net.Socket[] = [];
const timers: NodeJS.Timeout[] = [];
let outcome: FloodOutcome | undefined;
let started = 0;

/** What the runner can ask of the flood process. */
export const floodHostApi = {
  /** Opens the flood (the HTTP/2 connections first, then the slow sockets); resolves once every stream and socket was started. */
  async start(options: FloodOptions): Promise<void> {
    started = performance.now();
    const localAddress = options.localAddress ?? "127.0.0.2";
    const o: FloodOutcome = {
      streams: options.streams,
      unauthenticated: 0,
      otherStatus: 0,
      reset: {},
      open: options.streams,
      connectionsClosed: 0,
      slowSockets: options.slowSockets,
      socketsClosed: 0,
      socketsRefused: 0,
      lastSocketClosedS: 0,
    };
    outcome = o;
    const { port, hostname } = new URL(options.url);
    const body = Buffer.alloc(options.bodyBytes, 1);
    body[0] = 0;
    body.writeUInt32BE(options.bodyBytes * 2, 1); // declares twice what is sent: the message never completes
    const perConnection = Math.ceil(options.streams / options.connections);
    for (let c = 0; c < options.connections; c++) {
      const session = http2.connect(options.url, {
        createConnection: () => net.connect({ port: Number(port), host: hostname, localAddress }),
      });
      sessions.push(session);
      session.on("error", () => {});
      session.once("close", () => o.connectionsClosed++);
      await new Promise((resolve) => {
        session.once("connect", resolve);
        session.once("close", resolve);
      });
      for (let i = 0; i < perConnection && c * perConnection + i < options.streams; i++) {
        let stream: http2.ClientHttp2Stream;
        try {
          stream = session.request(
            { ":method": "POST", ":path": "/tokenbroker.v1.TokenService/GetToken", "content-type": "application/grpc", te: "trailers" },
            { endStream: false },
          );
        } catch {
          o.open--;
          o.reset["not sent"] = (o.reset["not sent"] ?? 0) + 1;
          continue;
        }
        let settled = false;
        const settle = (record: () => void) => {
          if (settled) return;
          settled = true;
          o.open--;
          record();
        };
        const status = (code: unknown) => settle(() => (Number(code) === 16 ? o.unauthenticated++ : o.otherStatus++));
        stream.on("error", () => {});
        stream.on("response", (h) => h["grpc-status"] !== undefined && status(h["grpc-status"]));
        stream.on("trailers", (t) => status(t["grpc-status"]));
        stream.on("close", () =>
          settle(() => {
            const code = stream.rstCode === undefined || stream.rstCode === 0 ? "connection closed" : String(stream.rstCode);
            o.reset[code] = (o.reset[code] ?? 0) + 1;
          }),
        );
        stream.write(body); // and never ends: the client keeps the stream open for as long as the server lets it
      }
    }
    await Promise.all(
      Array.from({ length: options.slowSockets }, async () => {
        const socket = net.connect({ port: Number(port), host: hostname, localAddress });
        sockets.push(socket);
        socket.on("error", () => {});
        const opened = performance.now();
        socket.once("close", () => {
          o.socketsClosed++;
          if (performance.now() - opened < 5000) o.socketsRefused++;
          o.lastSocketClosedS = Math.round((performance.now() - started) / 100) / 10;
        });
        await new Promise<void>((resolve) => {
          socket.once("connect", () => {
            socket.write("POST /tokenbroker.v1.TokenService/GetToken HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            const trickle = setInterval(() => !socket.destroyed && socket.write("a"), 1000);
            timers.push(trickle);
            resolve();
          });
          socket.once("close", () => resolve());
        });
      }),
    );
  },
  /** What became of the flood so far. */
  outcome(): FloodOutcome {
    if (!outcome) throw new Error("start the flood first");
    return { ...outcome, reset: { ...outcome.reset } };
  },
  /** Ends the flood. */
  stop(): void {
    for (const t of timers.splice(0)) clearInterval(t);
    for (const s of sockets.splice(0)) s.destroy();
    for (const s of sessions.splice(0)) s.destroy();
  },
};

/** The flood host's API, for typed calls from the runner. */
export type FloodHostApi = typeof floodHostApi;

serveHost(floodHostApi, async () => floodHostApi.stop());
