import type { QuotaFeedback, QuotaStore } from "./quota-store.js";
import type { PostgresDatabase, Queryable } from "./postgres-database.js";
import {
  APP_SCOPE,
  type Bucket,
  type BucketWrite,
  claimWrites,
  decideClaim,
  feedbackWrites,
  type Hold,
  holdScope,
  pruneBefore,
  summarizeUsage,
  tenantScope,
  type UsageRow,
  windowStart,
} from "./quota-windows.js";

/** Seeds the advisory-lock keys of the quota's scopes (`hashtextextended(scope, seed)`), apart from any other lock. */
const LOCK_SEED = 7_164_220_315;

interface ClaimRow {
  holds: Hold[];
  slots: number;
  first_expiry: number | null;
  seconds: Bucket[];
  hours: Bucket[];
  app_seconds: Bucket[];
}

/**
 * {@link QuotaStore} in PostgreSQL, shared by every host on the database:
 * each claim is one transaction (BEGIN, the advisory locks of the
 * organisation and then of the app, one read, one write, COMMIT), so the
 * hosts' claims on one organisation, and on the app's minute, take turns.
 * A release without Xero's answer is one statement.
 */
export function createPostgresQuota(db: PostgresDatabase): QuotaStore {
  const clock = db.clock;
  return {
    claim(c) {
      return db.transaction(async (client) => {
        const now = clock.now();
        const scope = c.tenantId === undefined ? null : tenantScope(c.tenantId);
        await lock(client, scope);
        const { rows } = await client.query<ClaimRow>(
          `SELECT
             (SELECT coalesce(json_agg(json_build_object('scope', scope, 'limit', problem, 'until', until)), '[]')
                FROM quota_holds WHERE scope IN ($1, $2) AND until > $3) AS holds,
             (SELECT count(*) FROM quota_slots WHERE scope = $1 AND expires_at > $3) AS slots,
             (SELECT min(expires_at) FROM quota_slots WHERE scope = $1 AND expires_at > $3) AS first_expiry,
             (SELECT coalesce(json_agg(json_build_object('start', start, 'count', calls + extra)), '[]')
                FROM quota_calls WHERE scope = $1 AND unit = 's' AND start >= $4) AS seconds,
             (SELECT coalesce(json_agg(json_build_object('start', start, 'count', calls + extra)), '[]')
                FROM quota_calls WHERE scope = $1 AND unit = 'h' AND start >= $5) AS hours,
             (SELECT coalesce(json_agg(json_build_object('start', start, 'count', calls + extra)), '[]')
                FROM quota_calls WHERE scope = $2 AND unit = 's' AND start >= $4) AS app_seconds`,
          [scope, APP_SCOPE, now, windowStart("s", now), windowStart("h", now)],
        );
        const r = rows[0]!;
        const answer = decideClaim({
          now,
          limits: c.limits,
          tenant: scope !== null,
          holds: r.holds,
          slots: { count: r.slots, firstExpiry: r.first_expiry },
          seconds: r.seconds,
          hours: r.hours,
          appSeconds: r.app_seconds,
        });
        if (answer.granted) {
          await client.query(
            `WITH slot AS (INSERT INTO quota_slots (slot_id, scope, expires_at) SELECT $1, $2, $3 WHERE $2::text IS NOT NULL)
             ${ADD_COUNTS.replace(/\$(\d)/g, (_, n: string) => `$${Number(n) + 3}`)}`,
            [c.slotId, scope, c.slotExpiresAt, ...countColumns(claimWrites(c.tenantId, now))],
          );
        }
        return answer;
      });
    },
    async release(slotId, feedback) {
      if (feedback === undefined || (feedback.remaining === undefined && feedback.hold === undefined)) {
        await db.query(`DELETE FROM quota_slots WHERE slot_id = $1`, [slotId]);
        return;
      }
      await db.transaction((client) => learn(client, slotId, feedback, clock.now()));
    },
    async usage() {
      const now = clock.now();
      const calls = await db.query<UsageRow>(`SELECT scope, unit, start, calls, extra FROM quota_calls WHERE start >= $1`, [
        windowStart("h", now),
      ]);
      const holds = await db.query<Hold>(`SELECT scope, problem AS "limit", until FROM quota_holds WHERE until > $1`, [now]);
      return summarizeUsage(now, calls.rows, holds.rows);
    },
    async prune() {
      const now = clock.now();
      const before = pruneBefore(now);
      await db.query(
        `WITH s AS (DELETE FROM quota_slots WHERE expires_at <= $1), h AS (DELETE FROM quota_holds WHERE until <= $1)
         DELETE FROM quota_calls WHERE (unit = 's' AND start < $2) OR (unit = 'm' AND start < $3) OR (unit = 'h' AND start < $4)`,
        [now, before.s, before.m, before.h],
      );
    },
  };
}

/** Adds counts to buckets, from five arrays ($1 to $5: scope, unit, start, calls, extra). */
const ADD_COUNTS = `INSERT INTO quota_calls (scope, unit, start, calls, extra)
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
  ON CONFLICT (scope, unit, start) DO UPDATE SET calls = quota_calls.calls + excluded.calls, extra = quota_calls.extra + excluded.extra`;

function countColumns(writes: readonly BucketWrite[]): unknown[][] {
  return [
    writes.map((w) => w.scope),
    writes.map((w) => w.unit),
    writes.map((w) => w.start),
    writes.map((w) => w.calls),
    writes.map((w) => w.extra),
  ];
}

/**
 * Takes the organisation's advisory lock, then the app's, for the
 * transaction: every claim and every release that learns takes them in this
 * order, in one statement (PostgreSQL evaluates a select list in order).
 * The same statement lets the transaction commit without waiting for the
 * disk (`synchronous_commit` off, for it alone): the locks are held until
 * the commit, and counts need not survive a crash of the server (Xero's
 * remaining headers put a lost one back); without it every claim of every
 * host would hold the app's lock through a WAL flush.
 */
async function lock(client: Queryable, scope: string | null): Promise<void> {
  const relaxed = "set_config('synchronous_commit', 'off', true)";
  await client.query(
    scope === null
      ? `SELECT ${relaxed}, pg_advisory_xact_lock(hashtextextended($1, ${LOCK_SEED}))`
      : `SELECT ${relaxed}, pg_advisory_xact_lock(hashtextextended($2, ${LOCK_SEED})), pg_advisory_xact_lock(hashtextextended($1, ${LOCK_SEED}))`,
    scope === null ? [APP_SCOPE] : [APP_SCOPE, scope],
  );
}

/** Frees the slot and learns from Xero's answer, under the claims' locks (the counts it compares with are then exact). */
async function learn(client: Queryable, slotId: string, feedback: QuotaFeedback, now: number): Promise<void> {
  const scope = feedback.tenantId === undefined ? null : tenantScope(feedback.tenantId);
  await lock(client, scope);
  const { rows } = await client.query<{ minute: number; day: number; app_minute: number }>(
    `WITH d AS (DELETE FROM quota_slots WHERE slot_id = $1)
     SELECT
       (SELECT coalesce(sum(calls + extra), 0)::bigint FROM quota_calls WHERE scope = $2 AND unit = 's' AND start >= $4) AS minute,
       (SELECT coalesce(sum(calls + extra), 0)::bigint FROM quota_calls WHERE scope = $2 AND unit = 'h' AND start >= $5) AS day,
       (SELECT coalesce(sum(calls + extra), 0)::bigint FROM quota_calls WHERE scope = $3 AND unit = 's' AND start >= $4) AS app_minute`,
    [slotId, scope, APP_SCOPE, windowStart("s", now), windowStart("h", now)],
  );
  const r = rows[0]!;
  const writes = feedback.remaining
    ? feedbackWrites(feedback.tenantId, feedback.limits, feedback.remaining, { minute: r.minute, day: r.day, appMinute: r.app_minute }, now)
    : [];
  if (writes.length > 0) await client.query(ADD_COUNTS, countColumns(writes));
  if (feedback.hold) {
    await client.query(
      `INSERT INTO quota_holds (scope, problem, until) VALUES ($1, $2, $3)
       ON CONFLICT (scope) DO UPDATE SET
         problem = CASE WHEN excluded.until > quota_holds.until THEN excluded.problem ELSE quota_holds.problem END,
         until = greatest(quota_holds.until, excluded.until)`,
      [holdScope(feedback.tenantId, feedback.hold.limit), feedback.hold.limit, feedback.hold.until],
    );
  }
}
