import { parseArgs } from "node:util";
import { ConfigError } from "../config.js";
import type { Command } from "./command.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { terminalJson, terminalSafe } from "./terminal-text.js";
import { DB } from "../settings/server-settings.js";
import { settingsHelp } from "../settings/settings-help.js";

/** `tokenbroker audit`: show the audit log. */
export const auditCommand: Command = {
  name: "audit",
  summary: "show who got which tenant's tokens, refreshes and admin actions",
  help: `Usage: tokenbroker audit [--since WHEN] [--limit N] [--json]

Shows the audit log, oldest first: every token handed out (with the API
key's name, the tenant or connection and the time; never the token), every
request a key was not allowed to make, every refresh, and admin actions
(keys created and revoked, key rotation, sign-ins to the status page).

Options:
  --since WHEN  only entries since WHEN: a duration back from now (90s, 15m,
                2h, 7d) or a date-time (2026-11-26T10:00:00Z)
  --limit N     the N most recent entries (default 100)
  --json        one JSON object a line
  -h, --help    show this help

${settingsHelp([DB])}
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: { since: { type: "string" }, limit: { type: "string" }, json: { type: "boolean" }, db: { type: "string" } },
      allowPositionals: false,
    });
    const since = values.since === undefined ? undefined : parseSince(values.since, Date.now());
    const limit = values.limit === undefined ? 100 : Number(values.limit);
    if (!Number.isInteger(limit) || limit <= 0)
      throw new ConfigError(`--limit must be a positive whole number, not ${JSON.stringify(values.limit)}`);
    const store = await openStoreOrExplain(dbPath(values.db, io.env));
    try {
      for (const e of await store.auditLog.read({ since, limit })) {
        const at = new Date(e.at).toISOString();
        if (values.json) {
          io.out.write(`${terminalJson({ ...e, at }, 0)}\n`);
          continue;
        }
        const target = [e.tenantId && `tenant=${e.tenantId}`, e.connectionId && `connection=${e.connectionId}`].filter(Boolean).join(" ");
        const fields = [at, (e.actor ?? "-").padEnd(16), e.action.padEnd(14), e.outcome.padEnd(10), target, e.detail ?? ""];
        io.out.write(`${terminalSafe(fields.join("  ").trimEnd())}\n`);
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};

/** `--since`: `90s`, `15m`, `2h`, `7d` back from `now`, or an ISO date-time. */
export function parseSince(text: string, now: number): number {
  const m = /^(\d+)([smhd])$/.exec(text.trim());
  if (m) return now - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new ConfigError(`--since ${JSON.stringify(text)} is neither a duration (15m, 2h, 7d) nor a date-time`);
  return t;
}
