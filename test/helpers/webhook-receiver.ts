import * as http from "node:http";
import { verifyWebhookSignature } from "../../src/notify/webhook-signature.js";

/** One POST the receiver got. */
export interface Received {
  body: string;
  json: Record<string, unknown> & { id: string; type: string; connection: Record<string, unknown> };
  signature: string | undefined;
  /** Whether the signature checked out with the receiver's secret. */
  verified: boolean;
  /** The status the receiver answered. */
  status: number;
}

/** A webhook receiver on loopback that verifies each delivery's signature, as an operator's would. */
export interface WebhookReceiver {
  url: URL;
  received: Received[];
  /** The deliveries that verified and were accepted, one per event id. */
  accepted(): Received["json"][];
  /** The next `n` deliveries are answered with `status` (e.g. 503), whatever their signature. */
  failNext(n: number, status: number): void;
  close(): Promise<void>;
}

/** Starts a receiver that accepts (204) deliveries signed with `secret` and refuses (401) the rest. */
export async function startWebhookReceiver(secret: string): Promise<WebhookReceiver> {
  const received: Received[] = [];
  const failures: number[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      const signature = req.headers["tokenbroker-signature"] as string | undefined;
      const verified = req.method === "POST" && verifyWebhookSignature(signature, body, secret);
      const status = failures.shift() ?? (verified ? 204 : 401);
      received.push({ body, json: JSON.parse(body) as Received["json"], signature, verified, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: new URL(`http://127.0.0.1:${port}/hooks/tokenbroker`),
    received,
    accepted() {
      const seen = new Set<string>();
      return received.filter((r) => r.verified && r.status < 300 && !seen.has(r.json.id) && seen.add(r.json.id)).map((r) => r.json);
    },
    failNext(n, status) {
      for (let i = 0; i < n; i++) failures.push(status);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
