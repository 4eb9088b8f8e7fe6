import { Redis } from 'ioredis';
import { MemoryFirstSightings } from '../../src/service/first-sightings.js';
import { RedisFirstSightings } from '../../src/service/redis/first-sightings.js';
import { firstSightingsContract } from './first-sightings-contract.js';
import { Deployment, redisAvailable, redisUrl } from './redis/harness.js';

firstSightingsContract('memory', () => new MemoryFirstSightings());

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the Redis FirstSightings tests: no Redis answers on 127.0.0.1:6379.');

(redisUp ? describe : describe.skip)('RedisFirstSightings', () => {
  const deployment = new Deployment('sightings');
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  let scope = 0;
  afterAll(async () => {
    connection.disconnect();
    await deployment.cleanup();
  });

  firstSightingsContract('redis', () => new RedisFirstSightings(connection, deployment.keys.seen(`contract-${(scope += 1)}`)));

  test('two processes over one scope share what they have seen; other scopes do not', async () => {
    const other = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      const first = new RedisFirstSightings(connection, deployment.keys.seen('shared'));
      const second = new RedisFirstSightings(other, deployment.keys.seen('shared'));
      const elsewhere = new RedisFirstSightings(other, deployment.keys.seen('elsewhere'));
      expect(await first.claim('signature', 60_000)).toBe(true);
      expect(await second.claim('signature', 60_000)).toBe(false);
      expect(await elsewhere.claim('signature', 60_000)).toBe(true);
      expect(await connection.pttl(`${deployment.keys.seen('shared')}signature`)).toBeGreaterThan(0);
    } finally {
      other.disconnect();
    }
  });
});

describe('MemoryFirstSightings', () => {
  test('forgets keys whose time to live has passed, so memory stays bounded', async () => {
    let now = 1_000_000;
    const sightings = new MemoryFirstSightings(() => now);
    for (const key of ['a', 'b', 'c']) expect(await sightings.claim(key, 1000)).toBe(true);
    now += 1000;
    expect(await sightings.claim('d', 1000)).toBe(true);
    expect(sightings.size).toBe(1);
  });
});
