/**
 * DeliveryClaims against a real Redis: who may adopt or show a job, as three bot processes would
 * see it (three instances with their own ids over one deployment's keys).
 */
import { Redis } from 'ioredis';
import { DeliveryClaims } from '../../../src/service/redis/delivery-claims.js';
import { Deployment, redisAvailable, redisUrl } from './harness.js';

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the delivery claim tests: no Redis answers on 127.0.0.1:6379.');

(redisUp ? describe : describe.skip)('DeliveryClaims', () => {
  let scene: Deployment;
  let connection: Redis;

  beforeEach(() => {
    scene = new Deployment('claims');
    connection = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  });

  afterEach(async () => {
    connection.disconnect();
    await scene.cleanup();
  });

  const bot = (botId: string): DeliveryClaims => new DeliveryClaims(connection, scene.keys, { botId, ownerTimeoutMs: 60_000, leaseMs: 60_000 });

  test('a live owner keeps its job; once its heartbeat is gone, one bot adopts it and the others see it owned', async () => {
    const [owner, second, third] = [bot('owner'), bot('second'), bot('third')];
    await Promise.all([owner.start(), second.start(), third.start()]);
    await owner.track('job1', 'discord', 1);
    expect([await second.peek('job1'), await second.adopt('job1'), await second.claim('job1')]).toEqual(['owned', 'owned', 'owned']);
    expect(await second.orphans(['discord'])).toEqual([]);

    await owner.stop();
    expect(await second.orphans(['discord'])).toEqual(['job1']);
    expect(await second.orphans(['slack'])).toEqual([]);
    expect(await second.peek('job1')).toBe('free');
    expect(await second.adopt('job1')).toBe('adopted');
    expect(await third.adopt('job1')).toBe('owned');
    expect(await third.orphans(['discord'])).toEqual([]);
    // The adopter's own list includes it, so that a bot that lost track of a job finds it again.
    expect(await second.orphans(['discord'])).toEqual(['job1']);
    await Promise.all([second.stop(), third.stop()]);
  });

  test('of two bots claiming the end of an orphaned job, one shows it; after done nobody claims it again', async () => {
    const [owner, second, third] = [bot('owner'), bot('second'), bot('third')];
    await owner.track('job2', 'slack', 1);
    // The owner never started its heartbeat: it is as good as dead.
    const outcomes = await Promise.all([second.claim('job2'), third.claim('job2')]);
    expect([...outcomes].sort()).toEqual(['busy', 'claimed']);
    const winner = outcomes[0] === 'claimed' ? second : third;
    expect(await winner.claim('job2')).toBe('claimed');
    await winner.done('job2');
    expect([await owner.claim('job2'), await second.claim('job2'), await third.peek('job2')]).toEqual(['done', 'done', 'done']);
    expect(await connection.exists(scene.keys.delivering('job2'))).toBe(0);
  });

  test('a live owner that releases a job (a graceful stop) lets another bot adopt it at once; jobs of other owners stay theirs', async () => {
    const [owner, second, third] = [bot('owner'), bot('second'), bot('third')];
    await Promise.all([owner.start(), second.start(), third.start()]);
    await owner.track('kept', 'discord', 1);
    await owner.track('left', 'discord', 1);
    await third.track('theirs', 'discord', 1);
    expect(await owner.release(['left', 'theirs', 'unknown'])).toBe(1);
    expect(await owner.release([])).toBe(0);
    // The owner's heartbeat is still alive: only the released job is free.
    expect(await second.orphans(['discord'])).toEqual(['left']);
    expect([await second.peek('kept'), await second.peek('theirs'), await second.peek('left')]).toEqual(['owned', 'owned', 'free']);
    expect(await second.adopt('left')).toBe('adopted');
    expect(await third.adopt('left')).toBe('owned');
    await Promise.all([owner.stop(), second.stop(), third.stop()]);
  });

  test('an owner showing its job keeps out a bot that takes it for dead (its heartbeat lapsed)', async () => {
    const owner = bot('owner');
    await owner.track('job3', 'test', 1);
    expect(await owner.claim('job3')).toBe('claimed');
    expect(await bot('other').claim('job3')).toBe('busy');
  });
});
