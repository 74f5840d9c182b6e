/**
 * The delay before retry `attempt` (0 for the first): `initialDelayMs`
 * doubled with each attempt, up to `maxDelayMs`, and "equal jitter": a random
 * point in the upper half, so that brokers (or webhook deliveries) that failed
 * together do not all retry in the same millisecond.
 *
 * The client package has the same rule for reconnecting streams
 * (`@tokenbroker/client`'s `backoffDelay`); the two packages share no code.
 */
export function backoffDelay(
  attempt: number,
  initialDelayMs: number,
  maxDelayMs: number = Number.POSITIVE_INFINITY,
  random: () => number = Math.random,
): number {
  const base = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 30));
  return base / 2 + random() * (base / 2);
}
