/**
 * Fair ordering of queued jobs across users: start-time fair queuing with one lane per user.
 * Each job gets a start tag `max(virtual time, the user's previous finish tag)`; the job with the
 * smallest tag runs next, ties broken by arrival. A user with a backlog has tags far in the
 * future, so a newcomer's first job is tagged with the current virtual time and runs next: one
 * user's backlog never pushes another user's first job back by more than one job per slot.
 */

interface Entry<T> {
  item: T;
  lane: string;
  tag: number;
  sequence: number;
}

export class FairScheduler<T> {
  private readonly lanes = new Map<string, Array<Entry<T>>>();
  private readonly lastFinish = new Map<string, number>();
  private virtualTime = 0;
  private sequence = 0;
  private count = 0;

  /** Jobs waiting. */
  get size(): number {
    return this.count;
  }

  /** Adds a job to the end of its user's lane. */
  enqueue(lane: string, item: T): void {
    const tag = Math.max(this.virtualTime, this.lastFinish.get(lane) ?? 0);
    this.lastFinish.set(lane, tag + 1);
    const entries = this.lanes.get(lane) ?? [];
    entries.push({ item, lane, tag, sequence: this.sequence++ });
    this.lanes.set(lane, entries);
    this.count += 1;
  }

  /** Takes the next job whose lane `eligible` allows, or undefined. */
  next(eligible: (lane: string) => boolean = () => true): T | undefined {
    let best: Entry<T> | undefined;
    for (const [lane, entries] of this.lanes) {
      const head = entries[0];
      if (!head || !eligible(lane)) continue;
      if (!best || head.tag < best.tag || (head.tag === best.tag && head.sequence < best.sequence)) best = head;
    }
    if (!best) return undefined;
    this.take(best);
    this.virtualTime = Math.max(this.virtualTime, best.tag);
    return best.item;
  }

  /** Removes a job that is no longer wanted (cancelled, or failed at shutdown). */
  remove(predicate: (item: T) => boolean): T | undefined {
    for (const entries of this.lanes.values()) {
      const entry = entries.find((candidate) => predicate(candidate.item));
      if (entry) {
        this.take(entry);
        return entry.item;
      }
    }
    return undefined;
  }

  /** Every waiting job in the order it would run if nothing else arrived. */
  ordered(): T[] {
    const all: Array<Entry<T>> = [];
    for (const entries of this.lanes.values()) all.push(...entries);
    all.sort((a, b) => a.tag - b.tag || a.sequence - b.sequence);
    return all.map((entry) => entry.item);
  }

  /**
   * The 1-based place a waiting job has in {@link ordered}, without sorting (O(n)); 0 when it is
   * not waiting. `ahead` receives every job that runs before it.
   */
  positionOf(item: T, ahead?: (other: T) => void): number {
    let target: Entry<T> | undefined;
    for (const entries of this.lanes.values()) {
      target = entries.find((entry) => entry.item === item);
      if (target) break;
    }
    if (!target) return 0;
    let position = 1;
    for (const entries of this.lanes.values()) {
      for (const entry of entries) {
        // A lane's tags only grow, so the rest of this lane runs after the target.
        if (entry.tag > target.tag || (entry.tag === target.tag && entry.sequence >= target.sequence)) break;
        position += 1;
        ahead?.(entry.item);
      }
    }
    return position;
  }

  /** The jobs in one lane, oldest first. */
  laneItems(lane: string): T[] {
    return (this.lanes.get(lane) ?? []).map((entry) => entry.item);
  }

  /** Removes and returns every waiting job. */
  drain(): T[] {
    const items = this.ordered();
    this.lanes.clear();
    this.count = 0;
    return items;
  }

  private take(entry: Entry<T>): void {
    const entries = this.lanes.get(entry.lane)!;
    entries.splice(entries.indexOf(entry), 1);
    if (entries.length === 0) {
      this.lanes.delete(entry.lane);
      // An idle user starts afresh at the current virtual time rather than keeping old credit.
      if ((this.lastFinish.get(entry.lane) ?? 0) <= this.virtualTime) this.lastFinish.delete(entry.lane);
    }
    this.count -= 1;
  }
}
