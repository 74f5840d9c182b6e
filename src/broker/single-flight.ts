/**
 * Runs at most one task per key at a time: callers that ask while a task for
 * their key is running share its result instead of starting another.
 */
export class SingleFlight<K, V> {
  private readonly inFlight = new Map<K, Promise<V>>();

  /** Joins the running task for `key`, or starts `task` if there is none. */
  run(key: K, task: () => Promise<V>): Promise<V> {
    const running = this.inFlight.get(key);
    if (running) return running;
    const started = task().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, started);
    return started;
  }

  /** True while a task for `key` runs. */
  has(key: K): boolean {
    return this.inFlight.has(key);
  }

  /** Resolves when every task running now has settled. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
  }
}
