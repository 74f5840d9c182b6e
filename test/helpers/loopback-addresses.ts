import { spawnSync } from "node:child_process";

/** The addresses of the three "hosts" of the several-hosts tests: one machine's loopback, as three machines. */
export const HOST_ADDRESSES = ["127.0.0.1", "127.0.0.2", "127.0.0.3"] as const;

const BIND_ALL = `
const net = require("node:net");
const addresses = JSON.parse(process.argv[1]);
let left = addresses.length;
for (const host of addresses) {
  const server = net.createServer().once("error", () => process.exit(1));
  server.listen(0, host, () => server.close(() => --left === 0 && process.exit(0)));
}`;

/**
 * Whether every address of {@link HOST_ADDRESSES} can be bound here. Linux routes all of 127.0.0.0/8 to the
 * loopback interface; macOS has only 127.0.0.1 until aliases are added. Returns `undefined` when they can;
 * otherwise prints one `SKIPPED:` line saying how to add them and returns the reason (for `describe.skipIf`),
 * or throws where `CI` is set, so that CI never passes by skipping.
 */
export function missingLoopbackAddresses(): string | undefined {
  const run = spawnSync(process.execPath, ["-e", BIND_ALL, JSON.stringify(HOST_ADDRESSES)], { stdio: "ignore", timeout: 10_000 });
  if (run.status === 0) return undefined;
  const reason = `cannot bind ${HOST_ADDRESSES.slice(1).join(" and ")} (macOS: sudo ifconfig lo0 alias 127.0.0.2 up; sudo ifconfig lo0 alias 127.0.0.3 up)`;
  if (process.env["CI"]) throw new Error(`${reason}: CI requires them`);
  console.warn(`SKIPPED: ${reason}; the several-hosts tests run once they can be bound, and always in CI`);
  return reason;
}
