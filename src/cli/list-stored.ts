import { parseArgs } from "node:util";
import type { ConnectionSummary } from "../store/connection-store.js";
import type { CommandIo } from "./command.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";

/**
 * Runs a read-only listing command (`connections`, `tenants`): parses `--db`
 * and `--json`, opens the store, reads every connection, writes what
 * `render` makes of them (with a newline) and closes the store.
 */
export async function listStored(
  args: string[],
  io: CommandIo,
  render: (connections: ConnectionSummary[], json: boolean) => string,
): Promise<number> {
  const { values } = parseArgs({ args, options: { db: { type: "string" }, json: { type: "boolean" } }, allowPositionals: false });
  const store = await openStoreOrExplain(dbPath(values.db, io.env));
  try {
    io.out.write(`${render(await store.connections.listConnections(), values.json ?? false)}\n`);
    return 0;
  } finally {
    await store.close();
  }
}
