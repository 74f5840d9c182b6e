/**
 * The client side of the bench, in a process of its own so that the load
 * generator and the server under test never share an event loop.
 */
import { serveHost } from "../ipc.js";
import { createGetTokenCall, type GetTokenCall, type ProtocolName } from "./clients.js";
import { runClosedLoop, type ClosedLoopOptions, type ClosedLoopResult } from "./closed-loop.js";
import { prepareStorm, type Storm, type StormOptions, type StormResult } from "./storm.js";
import { prepareLongPolls, type LongPollRound, type LongPolls, type LongPollsOptions } from "./long-polls.js";
import { openWatchers, type FanOutRound, type Watchers, type WatchersOptions } from "./watchers.js";
import { openHostWatchers, type HostWatchers, type HostWatchersOptions } from "./host-watchers.js";

/** One client per protocol and server, kept across runs so its connections stay warm. */
const clients = new Map<string, { call: GetTokenCall; close(): void }>();
const storms = new Map<string, Storm>();
let watchers: Watchers | undefined;
let hostWatchers: HostWatchers | undefined;
let longPolls: LongPolls | undefined;

/** What the runner can ask of the load process. */
export const loadHostApi = {
  /** Closed-loop GetToken load over `protocol` against `url`. */
  async getTokenLoad(
    url: string,
    protocol: ProtocolName,
    options: ClosedLoopOptions,
    headers: Record<string, string> = {},
  ): Promise<ClosedLoopResult> {
    const key = `${protocol} ${url} ${JSON.stringify(headers)}`;
    let client = clients.get(key);
    if (!client) {
      client = createGetTokenCall(protocol, url, headers);
      clients.set(key, client);
    }
    return runClosedLoop(client.call, options);
  },
  /** Connects a storm's callers (warmed with one GetToken each connection), under `name`. */
  async prepareStorm(name: string, options: StormOptions): Promise<void> {
    storms.set(name, await prepareStorm(options));
  },
  /** Sends every request of storm `name` at once; resolves when all are answered. */
  async fireStorm(name: string): Promise<StormResult> {
    const storm = storms.get(name);
    if (!storm) throw new Error(`prepareStorm ${name} first`);
    return storm.fire();
  },
  /** Opens WatchToken streams; resolves when each has its first message. */
  async openWatchers(options: WatchersOptions): Promise<{ count: number; openMs: number }> {
    watchers = await openWatchers(options);
    return { count: watchers.count, openMs: watchers.openMs };
  },
  /** One refresh, timed until it reached every stream. */
  async fanOutRound(): Promise<FanOutRound> {
    if (!watchers) throw new Error("openWatchers first");
    return watchers.round();
  },
  /** Connects the long polls' reporter and reads the current version. */
  async prepareLongPolls(options: LongPollsOptions): Promise<void> {
    longPolls = await prepareLongPolls(options);
  },
  /** Sends `n` more long polls (they wait on the server). */
  sendLongPolls(n: number): void {
    if (!longPolls) throw new Error("prepareLongPolls first");
    longPolls.send(n);
  },
  /** One refresh, timed until it answered every long poll; closes their connections. */
  async answerLongPolls(): Promise<LongPollRound> {
    if (!longPolls) throw new Error("prepareLongPolls first");
    const round = await longPolls.answer();
    longPolls = undefined;
    return round;
  },
  /** Cancels the streams. */
  closeWatchers(): void {
    watchers?.close();
    watchers = undefined;
  },
  /** Opens WatchToken streams on several hosts; resolves when each has its first message. */
  async openHostWatchers(options: HostWatchersOptions): Promise<void> {
    hostWatchers = await openHostWatchers(options);
  },
  /** Per host, when each stream received `version` (wall clock, ms); waits until all have. */
  hostArrivals(version: number): Promise<number[][]> {
    if (!hostWatchers) throw new Error("openHostWatchers first");
    return hostWatchers.arrivals(version);
  },
  /** Cancels the several hosts' streams. */
  closeHostWatchers(): void {
    hostWatchers?.close();
    hostWatchers = undefined;
  },
};

/** The load host's API, for typed calls from the runner. */
export type LoadHostApi = typeof loadHostApi;

serveHost(loadHostApi, async () => {
  watchers?.close();
  hostWatchers?.close();
  for (const c of clients.values()) c.close();
});
