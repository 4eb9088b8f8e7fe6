/**
 * Runs one job's listener calls in order, for the in-memory service and the Redis bot service. A
 * queued or progress update that has not gone out yet is replaced by a newer one of its kind, so a
 * slow platform edit never builds a backlog of stale positions.
 */
export class EventChain {
  private readonly pending: Array<{ kind: string | undefined; run: () => unknown }> = [];
  private draining: Promise<void> | undefined;
  private readonly onError: (error: unknown) => void;
  private readonly beforeDrain: () => Promise<unknown>;

  /**
   * `beforeDrain`: what the first call of a burst waits for before listeners run; default one
   * microtask (the caller's continuation).
   */
  constructor(onError: (error: unknown) => void, options: { beforeDrain?: () => Promise<unknown> } = {}) {
    this.onError = onError;
    this.beforeDrain = options.beforeDrain ?? (() => Promise.resolve());
  }

  push(run: () => unknown, replaceable?: 'queued' | 'progress'): void {
    const last = this.pending[this.pending.length - 1];
    if (replaceable && last?.kind === replaceable) last.run = run;
    else this.pending.push({ kind: replaceable, run });
    this.draining ??= this.drain();
  }

  idle(): Promise<void> {
    return this.draining ?? Promise.resolve();
  }

  private async drain(): Promise<void> {
    await this.beforeDrain();
    while (this.pending.length > 0) {
      const event = this.pending.shift()!;
      try {
        await event.run();
      } catch (error) {
        this.onError(error);
      }
    }
    this.draining = undefined;
  }
}
