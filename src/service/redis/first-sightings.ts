import type { Redis } from 'ioredis';
import type { FirstSightings } from '../first-sightings.js';

/** {@link FirstSightings} shared by every process of a deployment: one `SET … NX PX` per claim. */
export class RedisFirstSightings implements FirstSightings {
  constructor(
    private readonly connection: Redis,
    /** Key prefix, e.g. RedisKeys.seen('discord-replay'). */
    private readonly prefix: string,
  ) {}

  async claim(key: string, ttlMs: number): Promise<boolean> {
    const result = await this.connection.set(`${this.prefix}${key}`, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
    return result === 'OK';
  }
}
