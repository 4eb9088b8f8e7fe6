/**
 * Keys remembered for a while, so that something is done once only: `claim` answers true the
 * first time a key is claimed within its time to live. The Discord endpoint records request
 * signatures here to refuse replays; with QUEUE=redis the keys live in Redis, so a request
 * replayed to another bot process behind the same load balancer is refused too.
 */
export interface FirstSightings {
  /** True the first time `key` is claimed within `ttlMs` of its first claim; false while it is remembered. */
  claim(key: string, ttlMs: number): Promise<boolean>;
}

/** One process's memory. Expired keys are forgotten as later claims pass them, so memory stays bounded. */
export class MemoryFirstSightings implements FirstSightings {
  /** key -> when it may be claimed again. */
  readonly #seen = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  async claim(key: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    // Insertion order is expiry order when every claim uses the same time to live (the one caller does);
    // a key with a longer one only stops this sweep early, it is never forgotten too soon.
    for (const [seen, expiresAt] of this.#seen) {
      if (expiresAt > now) break;
      this.#seen.delete(seen);
    }
    const expiresAt = this.#seen.get(key);
    if (expiresAt !== undefined && expiresAt > now) return false;
    this.#seen.delete(key);
    this.#seen.set(key, now + ttlMs);
    return true;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#seen.size;
  }
}
