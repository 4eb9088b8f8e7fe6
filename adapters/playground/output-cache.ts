/**
 * The latest job outputs (grids and upscales) kept in memory so that the page's <img> loads them
 * without composing the grid again. Bounded: the oldest entries go first; anything evicted is
 * rebuilt from the job store on request.
 */

/** One file as the browser gets it. */
export interface CachedImage {
  data: Uint8Array;
  contentType: string;
  width: number;
  height: number;
}

export class OutputCache {
  private readonly entries = new Map<string, CachedImage>();

  constructor(private readonly capacity = 32) {}

  get(jobId: string): CachedImage | undefined {
    const entry = this.entries.get(jobId);
    if (entry) {
      // Map keeps insertion order: re-inserting marks it as the most recently used.
      this.entries.delete(jobId);
      this.entries.set(jobId, entry);
    }
    return entry;
  }

  /** Looks without marking the entry as used. */
  peek(jobId: string): CachedImage | undefined {
    return this.entries.get(jobId);
  }

  set(jobId: string, image: CachedImage): void {
    this.entries.delete(jobId);
    this.entries.set(jobId, image);
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}
