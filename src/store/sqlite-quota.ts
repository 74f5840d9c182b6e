import type { QuotaLimit } from "../quota/call-budget.js";
import type { QuotaStore } from "./quota-store.js";
import {
  APP_SCOPE,
  type Bucket,
  type BucketUnit,
  type BucketWrite,
  claimWrites,
  decideClaim,
  feedbackWrites,
  type Hold,
  holdScope,
  pruneBefore,
  summarizeUsage,
  tenantScope,
  total,
  type UsageRow,
  windowStart,
} from "./quota-windows.js";
import type { SqliteDatabase } from "./sqlite-database.js";

/**
 * {@link QuotaStore} in the SQLite file, shared by every process that opens
 * it: each claim and each release is one `BEGIN IMMEDIATE` transaction of a
 * few indexed statements (the file's write lock orders the processes' claims),
 * committed without an fsync (see `relaxed`).
 */
export function createSqliteQuota(sqlite: SqliteDatabase): QuotaStore {
  const db = sqlite.db;
  const clock = sqlite.clock;
  const holdsOf = db.prepare(`SELECT scope, problem AS "limit", until FROM quota_holds WHERE scope IN (?, ?) AND until > ?`);
  const slotsOf = db.prepare(
    `SELECT count(*) AS count, min(expires_at) AS firstExpiry FROM quota_slots WHERE scope = ? AND expires_at > ?`,
  );
  const bucketsOf = db.prepare(`SELECT start, calls + extra AS count FROM quota_calls WHERE scope = ? AND unit = ? AND start >= ?`);
  const insertSlot = db.prepare(`INSERT INTO quota_slots (slot_id, scope, expires_at) VALUES (?, ?, ?)`);
  const addCount = db.prepare(
    `INSERT INTO quota_calls (scope, unit, start, calls, extra) VALUES (@scope, @unit, @start, @calls, @extra)
     ON CONFLICT (scope, unit, start) DO UPDATE SET calls = calls + excluded.calls, extra = extra + excluded.extra`,
  );
  const deleteSlot = db.prepare(`DELETE FROM quota_slots WHERE slot_id = ?`);
  const putHold = db.prepare(
    `INSERT INTO quota_holds (scope, problem, until) VALUES (?, ?, ?)
     ON CONFLICT (scope) DO UPDATE SET problem = iif(excluded.until > until, excluded.problem, problem), until = max(until, excluded.until)`,
  );
  const allRows = db.prepare(`SELECT scope, unit, start, calls, extra FROM quota_calls WHERE start >= ?`);
  const allHolds = db.prepare(`SELECT scope, problem AS "limit", until FROM quota_holds WHERE until > ?`);
  const pruneUnit = db.prepare(`DELETE FROM quota_calls WHERE unit = ? AND start < ?`);
  const pruneSlots = db.prepare(`DELETE FROM quota_slots WHERE expires_at <= ?`);
  const pruneHolds = db.prepare(`DELETE FROM quota_holds WHERE until <= ?`);

  const buckets = (scope: string, unit: BucketUnit, now: number) => bucketsOf.all(scope, unit, windowStart(unit, now)) as Bucket[];
  const write = (writes: readonly BucketWrite[]) => {
    for (const w of writes) addCount.run(w);
  };

  const claim = db.transaction((c: Parameters<QuotaStore["claim"]>[0]) => {
    const now = clock.now();
    const scope = c.tenantId === undefined ? undefined : tenantScope(c.tenantId);
    const answer = decideClaim({
      now,
      limits: c.limits,
      tenant: scope !== undefined,
      holds: holdsOf.all(scope ?? APP_SCOPE, APP_SCOPE, now) as Hold[],
      slots:
        scope === undefined ? { count: 0, firstExpiry: null } : (slotsOf.get(scope, now) as { count: number; firstExpiry: number | null }),
      seconds: scope === undefined ? [] : buckets(scope, "s", now),
      hours: scope === undefined ? [] : buckets(scope, "h", now),
      appSeconds: buckets(APP_SCOPE, "s", now),
    });
    if (answer.granted) {
      if (scope !== undefined) insertSlot.run(c.slotId, scope, c.slotExpiresAt);
      write(claimWrites(c.tenantId, now));
    }
    return answer;
  });

  const release = db.transaction((slotId: string, feedback: Parameters<QuotaStore["release"]>[1]) => {
    deleteSlot.run(slotId);
    if (feedback === undefined) return;
    const now = clock.now();
    if (feedback.remaining) {
      const scope = feedback.tenantId === undefined ? undefined : tenantScope(feedback.tenantId);
      const counted = {
        minute: scope === undefined ? 0 : total(buckets(scope, "s", now)),
        day: scope === undefined ? 0 : total(buckets(scope, "h", now)),
        appMinute: total(buckets(APP_SCOPE, "s", now)),
      };
      write(feedbackWrites(feedback.tenantId, feedback.limits, feedback.remaining, counted, now));
    }
    if (feedback.hold) putHold.run(holdScope(feedback.tenantId, feedback.hold.limit), feedback.hold.limit, feedback.hold.until);
  });

  const prune = db.transaction(() => {
    const now = clock.now();
    const before = pruneBefore(now);
    for (const unit of ["s", "m", "h"] as const) pruneUnit.run(unit, before[unit]);
    pruneSlots.run(now);
    pruneHolds.run(now);
  });

  // Counts need not survive a power cut (Xero's remaining headers put a lost one back), token sets must: the
  // quota's commits skip the fsync (WAL with synchronous=NORMAL stays consistent, and the next FULL commit syncs
  // them too). Four to six times the claims a second on this machine's disk.
  const relax = db.prepare("PRAGMA synchronous = NORMAL");
  const restore = db.prepare(`PRAGMA synchronous = ${db.pragma("synchronous", { simple: true }) as number}`);
  const relaxed = <T>(body: () => T): T => {
    relax.run();
    try {
      return body();
    } finally {
      restore.run();
    }
  };
  return {
    async claim(c) {
      return relaxed(() => claim.immediate(c));
    },
    async release(slotId, feedback) {
      relaxed(() => release.immediate(slotId, feedback));
    },
    async usage() {
      const now = clock.now();
      const rows = allRows.all(windowStart("h", now)) as UsageRow[];
      return summarizeUsage(now, rows, allHolds.all(now) as Array<Hold & { limit: QuotaLimit }>);
    },
    async prune() {
      relaxed(() => prune.immediate());
    },
  };
}
