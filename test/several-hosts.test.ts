/**
 * Several hosts on one SQLite file: three `tokenbroker serve` processes on 127.0.0.1, .2 and .3 of one machine
 * sharing one database file, as three machines would share a database server (test/helpers/several-hosts.ts
 * holds the scenarios, for any store). SQLite's cross-process push is the scheduler polling the token sets
 * every 250 ms while a host has watchers, so a refresh reaches another host's watchers up to one poll after the
 * commit, and later while 1,000 callers of this very process and four other processes share the machine's cores:
 * 0.4–1.3 s measured on 2 shared cores. The bound asserted here leaves room for that; the issue's 250 ms is
 * the PostgreSQL store's (LISTEN/NOTIFY), and `npm run bench -- --only hosts` measures the figure with the
 * callers in a process of their own.
 *
 * The same scenarios on PostgreSQL, with the fourth: the database stopped for 10 s under load. LISTEN/NOTIFY
 * pushes a commit to every host at once (0–10 ms between two idle brokers, test/postgres-multi-process.test.ts),
 * but here the three hosts, the watchers' process and this process's 1,000 callers share the machine's cores:
 * 0.46–0.55 s measured at the p99 on 2 shared cores. The issue's 250 ms is measured by the bench, with the
 * callers in a process of their own.
 */
import { join } from "node:path";
import { afterAll } from "vitest";
import { tempDir } from "./helpers/broker-fixture.js";
import { describeSeveralHosts } from "./helpers/several-hosts.js";
import { missingPostgres } from "./helpers/postgres-server.js";
import { usePostgres } from "./helpers/store-backends.js";

const dir = tempDir();
afterAll(() => dir.cleanup());
let stores = 0;

describeSeveralHosts("SQLite", {
  freshStoreLocation: async () => join(dir.path, `hosts-${++stores}.db`),
  deliveryBoundMs: 2000,
});

const postgres = usePostgres();
if (missingPostgres() === undefined) {
  describeSeveralHosts("PostgreSQL", {
    freshStoreLocation: async () => (await postgres()).createDatabase(),
    stopStore: async () => (await postgres()).stop(),
    startStore: async () => (await postgres()).start(),
    deliveryBoundMs: 1000,
  });
}
