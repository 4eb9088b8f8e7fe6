import { FairScheduler } from '../../src/service/fair-scheduler.js';
import { ManualClock } from '../../src/service/clock.js';
import { TokenBuckets } from '../../src/service/rate-limiter.js';
import { ServiceMetrics } from '../../src/service/metrics.js';

describe('FairScheduler', () => {
  test('alternates between users with backlogs, oldest first within a user', () => {
    const scheduler = new FairScheduler<string>();
    for (const item of ['a1', 'a2', 'a3']) scheduler.enqueue('a', item);
    for (const item of ['b1', 'b2']) scheduler.enqueue('b', item);
    expect(scheduler.ordered()).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
    const taken: string[] = [];
    for (let item = scheduler.next(); item; item = scheduler.next()) taken.push(item);
    expect(taken).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
    expect(scheduler.size).toBe(0);
  });

  test("a newcomer's first job goes ahead of an existing backlog", () => {
    const scheduler = new FairScheduler<string>();
    for (let index = 0; index < 20; index += 1) scheduler.enqueue('heavy', `h${index}`);
    expect(scheduler.next()).toBe('h0');
    expect(scheduler.next()).toBe('h1');
    scheduler.enqueue('light', 'l0');
    expect(scheduler.positionOf('l0')).toBe(1);
    expect(scheduler.next()).toBe('l0');
    expect(scheduler.next()).toBe('h2');
  });

  test('skips lanes that may not run now and keeps their place', () => {
    const scheduler = new FairScheduler<string>();
    scheduler.enqueue('a', 'a1');
    scheduler.enqueue('b', 'b1');
    expect(scheduler.next((lane) => lane !== 'a')).toBe('b1');
    expect(scheduler.next((lane) => lane !== 'a')).toBeUndefined();
    expect(scheduler.next()).toBe('a1');
  });

  test('positionOf matches ordered() and names the jobs ahead', () => {
    const scheduler = new FairScheduler<string>();
    ['a1', 'a2', 'a3'].forEach((item) => scheduler.enqueue('a', item));
    ['b1', 'b2'].forEach((item) => scheduler.enqueue('b', item));
    scheduler.enqueue('c', 'c1');
    const ordered = scheduler.ordered();
    for (const item of ordered) {
      const ahead: string[] = [];
      expect(scheduler.positionOf(item, (other) => ahead.push(other))).toBe(ordered.indexOf(item) + 1);
      expect(ahead.sort()).toEqual(ordered.slice(0, ordered.indexOf(item)).sort());
    }
    expect(scheduler.positionOf('missing')).toBe(0);
  });

  test('remove and drain take jobs out', () => {
    const scheduler = new FairScheduler<string>();
    ['a1', 'a2'].forEach((item) => scheduler.enqueue('a', item));
    scheduler.enqueue('b', 'b1');
    expect(scheduler.remove((item) => item === 'a1')).toBe('a1');
    expect(scheduler.laneItems('a')).toEqual(['a2']);
    expect(scheduler.drain().sort()).toEqual(['a2', 'b1']);
    expect(scheduler.size).toBe(0);
  });
});

describe('TokenBuckets', () => {
  const settings = { ratePerMinute: 6, burst: 2 };

  test('allows a burst, then one token per 60/rate seconds', () => {
    const clock = new ManualClock();
    const buckets = new TokenBuckets(clock);
    expect(buckets.take('u', settings)).toBe(0);
    expect(buckets.take('u', settings)).toBe(0);
    expect(buckets.take('u', settings)).toBe(10_000);
    clock.advance(4_000);
    expect(buckets.take('u', settings)).toBe(6_000);
    clock.advance(6_000);
    expect(buckets.take('u', settings)).toBe(0);
    expect(buckets.peek('u', settings)).toEqual({ tokens: 0, nextTokenInMs: 10_000 });
  });

  test('never holds more than the burst, and refunds up to it', () => {
    const clock = new ManualClock();
    const buckets = new TokenBuckets(clock);
    clock.advance(3_600_000);
    expect(buckets.peek('u', settings).tokens).toBe(2);
    buckets.refund('u', settings);
    expect(buckets.peek('u', settings)).toEqual({ tokens: 2, nextTokenInMs: 0 });
  });
});

describe('ServiceMetrics', () => {
  test('histogram buckets are cumulative and gauges are read live', () => {
    let depth = 3;
    const metrics = new ServiceMetrics(() => ({ queueDepth: depth, running: 1, slots: 2 }));
    metrics.jobCompleted('imagine', 1_500);
    metrics.jobCompleted('imagine', 45_000);
    metrics.jobFailed('timed_out');
    const snapshot = metrics.snapshot();
    const buckets = Object.fromEntries(snapshot.durations.imagine!.buckets.map((bucket) => [String(bucket.le), bucket.count]));
    expect(buckets).toMatchObject({ '1': 0, '2': 1, '30': 1, '60': 2, Infinity: 2 });
    expect(snapshot.durations.imagine!.sumSeconds).toBeCloseTo(46.5);
    expect(snapshot.failures).toEqual({ timed_out: 1 });
    depth = 7;
    expect(metrics.queueDepth).toBe(7);
    expect(metrics.toPrometheus()).toContain('imagine_queue_depth 7\n');
  });
});
