/**
 * Per-user token buckets: `burst` jobs at once, refilled at `ratePerMinute`.
 */
import type { Clock } from './clock.js';

export interface BucketSettings {
  ratePerMinute: number;
  burst: number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** A token bucket per key, refilled lazily from an injected clock. */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly clock: Clock;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /** Tokens left for `key` now (fractional) and milliseconds until the next whole token. */
  peek(key: string, settings: BucketSettings): { tokens: number; nextTokenInMs: number } {
    const bucket = this.refill(key, settings);
    const whole = Math.floor(bucket.tokens);
    const nextTokenInMs = bucket.tokens >= settings.burst ? 0 : wholeMs(((whole + 1 - bucket.tokens) * 60_000) / settings.ratePerMinute);
    return { tokens: bucket.tokens, nextTokenInMs };
  }

  /** Takes one token; returns 0 when taken, else milliseconds until one is available. */
  take(key: string, settings: BucketSettings): number {
    const bucket = this.refill(key, settings);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, wholeMs(((1 - bucket.tokens) * 60_000) / settings.ratePerMinute));
  }

  /** Gives back a token taken for a request that was then refused. */
  refund(key: string, settings: BucketSettings): void {
    const bucket = this.refill(key, settings);
    bucket.tokens = Math.min(settings.burst, bucket.tokens + 1);
  }

  private refill(key: string, settings: BucketSettings): Bucket {
    const now = this.clock.now();
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { tokens: settings.burst, updatedAt: now };
      this.buckets.set(key, bucket);
      return bucket;
    }
    const elapsed = Math.max(0, now - bucket.updatedAt);
    bucket.tokens = Math.min(settings.burst, bucket.tokens + (elapsed * settings.ratePerMinute) / 60_000);
    bucket.updatedAt = now;
    return bucket;
  }
}

/** Rounds up to whole milliseconds, ignoring floating-point dust (4000.0000001 is 4000). */
function wholeMs(ms: number): number {
  return Math.ceil(ms - 1e-6);
}
