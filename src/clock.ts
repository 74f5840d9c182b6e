/**
 * The source of time for every expiry decision, so tests can move time by hand.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that only moves when told to: for tests of expiry, proactive refresh
 * and the 60-day keep-alive without waiting.
 */
export class ManualClock implements Clock {
  private ms: number;

  /** Starts at `start` (ms since the epoch), by default the current time. */
  constructor(start: number = Date.now()) {
    this.ms = start;
  }

  now(): number {
    return this.ms;
  }

  /** Moves the clock forward (or, with a negative value, back) by `ms`. */
  advance(ms: number): void {
    this.ms += ms;
  }

  /** Sets the clock to an absolute time. */
  set(ms: number): void {
    this.ms = ms;
  }
}
