import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setMaxListeners } from "node:events";
import { parseArgs } from "node:util";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { sleep } from "../src/broker/abortable.js";
import { ConfigError, parseListen, positiveNumber } from "../src/config.js";
import { identityServerOptions, startFakeXero } from "@tokenbroker/fake-xero";
import { importRefreshToken } from "../src/importer.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { openStore } from "../src/store/open-store.js";
import type { Command } from "../src/cli/command.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { createCallBudget } from "../src/quota/quota-keeper.js";

/** `npm run demo`: the whole system on loopback, with a fake Xero (not part of the published package). */
export const demoCommand: Command = {
  name: "demo",
  summary: "watch many channels share one token: a fake Xero, the broker and demo channels on loopback",
  help: `Usage: npm run demo -- [options]

Starts a fake Xero identity server, the broker (against it, with short-lived
access tokens) and a crowd of demo channels that ask the broker for a token
and call the fake Xero API with it, half over gRPC and half over Connect JSON
on HTTP/1.1, and a few channels that call the fake Xero's accounting API
through the broker's proxy (/xero/...), never seeing a token. It prints, as
it goes, how many tokens the channels were handed and how often Xero's token
endpoint was called (one refresh per expiry, however many channels ask), and
how the proxied calls shared the organisation's call limits (Xero never
answers them 429: the broker holds calls back itself). Nothing leaves this
machine.

Options:
  --channels N        demo channels asking for tokens (default 40)
  --proxy-channels N  demo channels calling Xero through the proxy (default 10; 0 for none)
  --duration SECONDS  how long to run (default 60; 0 runs until Ctrl-C)
  --lifetime SECONDS  access-token lifetime at the fake Xero (default 20)
  --listen HOST:PORT  where the broker listens (default 127.0.0.1:50051, or a free port if taken)

Xero's call limits at the fake Xero API (default Xero's own); a channel that
gets a 429 waits its Retry-After:
  --xero-in-flight N         calls in flight per organisation (default 5)
  --xero-per-minute N        calls a minute per organisation (default 60)
  --xero-per-day N           calls a day per organisation (default 5000)
  --xero-app-per-minute N    calls a minute for the app, all organisations (default 10000)
  --xero-minute SECONDS      length of Xero's "minute", to watch the limits quicker (default 60)
  -h, --help          show this help
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: {
        channels: { type: "string" },
        "proxy-channels": { type: "string" },
        duration: { type: "string" },
        lifetime: { type: "string" },
        listen: { type: "string" },
        "xero-in-flight": { type: "string" },
        "xero-per-minute": { type: "string" },
        "xero-per-day": { type: "string" },
        "xero-app-per-minute": { type: "string" },
        "xero-minute": { type: "string" },
      },
      allowPositionals: false,
    });
    const channels = Math.round(positiveNumber("--channels", values.channels, 40));
    const proxyChannels =
      values["proxy-channels"] === "0" ? 0 : Math.round(positiveNumber("--proxy-channels", values["proxy-channels"], 10));
    const durationS = values.duration === "0" ? 0 : positiveNumber("--duration", values.duration, 60);
    const lifetimeS = positiveNumber("--lifetime", values.lifetime, 20);
    if (lifetimeS < 4) throw new ConfigError("--lifetime must be at least 4 seconds");
    const listen = parseListen(values.listen ?? "127.0.0.1:50051");
    const count = (flag: string, value: string | undefined, fallback: number) =>
      Math.max(1, Math.round(positiveNumber(flag, value, fallback)));
    const apiLimits = {
      tenantCallsInFlight: count("--xero-in-flight", values["xero-in-flight"], 5),
      tenantCallsPerMinute: count("--xero-per-minute", values["xero-per-minute"], 60),
      tenantCallsPerDay: count("--xero-per-day", values["xero-per-day"], 5000),
      appCallsPerMinute: count("--xero-app-per-minute", values["xero-app-per-minute"], 10_000),
      minuteMs: Math.round(positiveNumber("--xero-minute", values["xero-minute"], 60) * 1000),
    };
    const say = (line: string) => io.out.write(`${line}\n`);

    const fake = await startFakeXero({ accessTokenLifetimeSeconds: lifetimeS, apiLimits });
    const grant = fake.addGrant({ tenants: [{ tenantName: "Demo Company (AU)" }, { tenantName: "Demo Company (NZ)" }] });
    const dir = mkdtempSync(join(tmpdir(), "tokenbroker-demo-"));
    const store = await openStore(join(dir, "demo.db"));
    const identity = createOidcIdentityServer(identityServerOptions(fake));
    const imported = await importRefreshToken(store, identity, grant.refreshToken);
    const tenantId = imported.tenants[0]?.tenantId;
    if (!tenantId) throw new Error("the fake Xero listed no tenants");
    const refreshesAtStart = fake.refreshes;

    // The broker keeps Xero's limits as the fake enforces them (a 61 s window however short the fake's "minute").
    const quota = createCallBudget({
      store: store.quota,
      limits: {
        inFlight: apiLimits.tenantCallsInFlight,
        perMinute: apiLimits.tenantCallsPerMinute,
        perDay: apiLimits.tenantCallsPerDay,
        appPerMinute: apiLimits.appCallsPerMinute,
      },
      maxWaitMs: 10_000,
    });
    const proxy = { apiUrl: fake.apiUrl, refused: [`${fake.issuer}/connect`, `${fake.issuer}/identity`, `${fake.issuer}/.well-known`] };
    let server: BrokerServer;
    try {
      server = await startBrokerServer({ host: listen.host, port: listen.port, store, identity, proxy, quota });
    } catch (e) {
      if ((e as { code?: string }).code !== "EADDRINUSE") throw e;
      server = await startBrokerServer({ host: listen.host, port: 0, store, identity, proxy, quota });
    }
    say(`fake Xero identity server: ${fake.issuer} (access tokens live ${lifetimeS}s)`);
    say(`tokenbroker:               ${server.url}  (database ${join(dir, "demo.db")})`);
    say(`imported connection ${imported.connectionId} with tenants ${imported.tenants.map((t) => t.tenantName).join(", ")}`);
    say(`try it meanwhile:  curl -s ${server.url}/tokenbroker.v1.TokenService/GetToken \\`);
    say(`  -H 'content-type: application/json' -d '{"tenantId":"${tenantId}"}'`);
    say(`  curl -s ${server.url}/xero/api.xro/2.0/Organisation -H 'xero-tenant-id: ${tenantId}'   # through the proxy`);
    say(
      `starting ${channels} channels (half gRPC over HTTP/2, half Connect JSON over HTTP/1.1)` +
        (proxyChannels > 0
          ? ` and ${proxyChannels} calling Xero through the proxy (${apiLimits.tenantCallsPerMinute} calls a minute allowed)`
          : "") +
        "...\n",
    );

    const stats = { getToken: 0, apiOk: 0, api401: 0, api429: 0, errors: 0, pushes: 0 };
    const proxied = { ok: 0, heldBack: 0, errors: 0 };
    const stop = new AbortController();
    setMaxListeners(channels + 10, stop.signal); // every channel waits on it
    const grpc = createClient(TokenService, createGrpcTransport({ baseUrl: server.url }));
    const json = createClient(TokenService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const runs = Array.from({ length: channels }, (_, i) =>
      channel(i % 2 === 0 ? grpc : json, tenantId, fake.connectionsUrl, stats, stop.signal),
    );
    const proxyRuns = Array.from({ length: proxyChannels }, () => proxyChannel(server.url, tenantId, proxied, stop.signal));
    const xero429s = () => Object.values(fake.apiUsage(tenantId).rateLimited).reduce((n, x) => n + x, 0);
    const watcher = (async () => {
      try {
        for await (const update of grpc.watchToken({ selector: { case: "tenantId", value: tenantId } }, { signal: stop.signal })) {
          stats.pushes++;
          if (stats.pushes > 1) say(`  WatchToken pushed token v${update.token?.version} to subscribers`);
        }
      } catch {
        // stream ends with the demo
      }
    })();

    const started = Date.now();
    const report = () => {
      const token = fake.refreshes - refreshesAtStart;
      const secs = Math.round((Date.now() - started) / 1000);
      say(
        `[${String(secs).padStart(3)}s] ${channels} channels: ${stats.getToken.toLocaleString("en")} tokens handed out, ` +
          `${stats.apiOk.toLocaleString("en")} API calls accepted, ${stats.api429.toLocaleString("en")} refused by Xero's limits (429), ${stats.errors} errors | ` +
          `Xero token endpoint: ${token} refresh${token === 1 ? "" : "es"}` +
          (proxyChannels > 0
            ? `\n       proxy: ${proxied.ok} calls answered by Xero, ${proxied.heldBack} held back by the broker (429 + Retry-After), ` +
              `${xero429s()} refused by Xero, ${proxied.errors} errors`
            : ""),
      );
    };
    const ticker = setInterval(report, 5000);
    const onSigint = () => stop.abort();
    process.once("SIGINT", onSigint);
    if (durationS > 0) setTimeout(() => stop.abort(), durationS * 1000).unref();
    await new Promise((resolve) => stop.signal.addEventListener("abort", resolve, { once: true }));
    clearInterval(ticker);
    process.off("SIGINT", onSigint);
    await Promise.allSettled([...runs, ...proxyRuns, watcher]);
    report();
    const refreshes = fake.refreshes - refreshesAtStart;
    const elapsed = (Date.now() - started) / 1000;
    say(
      [
        "",
        `${channels} channels were handed ${stats.getToken.toLocaleString("en")} tokens in ${Math.round(elapsed)}s.`,
        `Xero's token endpoint was called ${refreshes} time${refreshes === 1 ? "" : "s"}: once per token lifetime, however many channels ask`,
        `(tokens in use are refreshed ahead of expiry: 5 minutes before for Xero's 30-minute tokens, halfway for these ${lifetimeS}s ones).`,
        `Refresh tokens rejected: ${fake.invalidGrants}. Channel errors: ${stats.errors}.`,
        ...(proxyChannels > 0
          ? [
              `Through the proxy, ${proxyChannels} channels made ${proxied.ok} calls Xero answered and got ${proxied.heldBack} 429s from the broker itself;`,
              `Xero answered them 429 ${xero429s()} times: the broker kept the organisation's budget for all of them.`,
            ]
          : []),
      ].join("\n"),
    );
    await server.close();
    quota.close();
    await store.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
    return stats.errors === 0 && proxied.errors === 0 && fake.invalidGrants === 0 ? 0 : 1;
  },
};

/** One demo channel: get a token, call the (fake) Xero API with it, repeat. */
async function channel(
  client: Client<typeof TokenService>,
  tenantId: string,
  apiUrl: string,
  stats: { getToken: number; apiOk: number; api401: number; api429: number; errors: number },
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const { token } = await client.getToken({ selector: { case: "tenantId", value: tenantId } });
      stats.getToken++;
      const res = await fetch(apiUrl, {
        headers: { authorization: `Bearer ${token?.accessToken}`, "xero-tenant-id": tenantId },
      });
      await res.body?.cancel();
      if (res.status === 401) {
        stats.api401++;
        await client.reportExpired({ selector: { case: "tenantId", value: tenantId }, accessToken: token?.accessToken ?? "" });
      } else if (res.status === 429) {
        stats.api429++;
        await sleep(Number(res.headers.get("retry-after") ?? 1) * 1000, signal);
      } else if (res.ok) {
        stats.apiOk++;
      } else {
        stats.errors++;
      }
    } catch {
      if (!signal.aborted) stats.errors++;
    }
    // About 2.5 calls a second each: 40 channels stay under the app's 10,000 calls a minute.
    await sleep(250 + Math.random() * 300, signal);
  }
}

/** One demo channel on the proxy: calls the organisation's invoices with no token of its own, waits a 429's Retry-After. */
async function proxyChannel(
  brokerUrl: string,
  tenantId: string,
  stats: { ok: number; heldBack: number; errors: number },
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const res = await fetch(`${brokerUrl}/xero/api.xro/2.0/Invoices`, { headers: { "xero-tenant-id": tenantId }, signal });
      await res.body?.cancel();
      if (res.ok) stats.ok++;
      else if (res.status === 429) {
        stats.heldBack++;
        await sleep(Number(res.headers.get("retry-after") ?? 1) * 1000, signal);
      } else stats.errors++;
    } catch {
      if (!signal.aborted) stats.errors++;
    }
    await sleep(100 + Math.random() * 200, signal);
  }
}
