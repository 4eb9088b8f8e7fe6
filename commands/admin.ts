/**
 * What the `admin` command controls, as interfaces the service (or anything else) implements:
 * runtime limits ({@link LimitControls}) and a channel allow/deny list ({@link ChannelPolicy}, with
 * a Keyv-backed implementation here). Who is an admin: the adapter's `requester.isAdmin`, or
 * `ADMIN_USERS` (`platform:userId` entries).
 */
import Keyv from 'keyv';
import type { Requester } from '../src/service/types.js';
import { StoreError } from '../src/errors.js';
import type { Config } from '../src/config/config.js';

/** The per-user limits an admin may change at runtime. */
export interface LimitValues {
  ratePerMinute: number;
  burst: number;
  maxRunning: number;
  maxQueued: number;
}

/** Ranges of the adjustable limits (the same as the configuration's). */
export const limitRanges: Record<keyof LimitValues, { min: number; max: number }> = {
  ratePerMinute: { min: 1, max: 10000 },
  burst: { min: 1, max: 1000 },
  maxRunning: { min: 1, max: 100 },
  maxQueued: { min: 0, max: 1000 },
};

/**
 * Implemented by the generation service to let admins change limits at runtime. Optional: without
 * it, `admin show-limits` / `set-limit` answer that this deployment does not support it.
 */
export interface LimitControls {
  getLimits(): LimitValues | Promise<LimitValues>;
  /** Applies the changes to new requests at once and returns the limits now in force. */
  setLimits(changes: Partial<LimitValues>): LimitValues | Promise<LimitValues>;
}

/** Channels where the bot answers, changed at runtime by admins. */
export interface ChannelPolicy {
  /** False when the requester's channel is denied, or when its platform has an allow list without it. Direct messages (no channel) are allowed. */
  isAllowed(requester: Pick<Requester, 'platform' | 'channelId'>): Promise<boolean>;
  allow(platform: string, channelId: string): Promise<void>;
  deny(platform: string, channelId: string): Promise<void>;
  /** Removes a channel from both lists. */
  clear(platform: string, channelId: string): Promise<void>;
  /** `platform:channelId` entries. */
  list(): Promise<{ allowed: string[]; denied: string[] }>;
}

/** True when the requester is an admin by the adapter's word or by `ADMIN_USERS`. */
export function isAdmin(requester: Requester, admins: readonly string[] = []): boolean {
  return requester.isAdmin === true || admins.includes(`${requester.platform}:${requester.userId}`);
}

/** A {@link ChannelPolicy} kept in Keyv (in memory when none is given). */
export function createChannelPolicy(keyv: Keyv = new Keyv({ namespace: 'channel-policy' })): ChannelPolicy {
  const key = 'channels';
  const read = async (): Promise<{ allowed: string[]; denied: string[] }> => {
    try {
      const value = await keyv.get<{ allowed?: unknown; denied?: unknown }>(key);
      const strings = (list: unknown): string[] => (Array.isArray(list) ? list.filter((item): item is string => typeof item === 'string') : []);
      return { allowed: strings(value?.allowed), denied: strings(value?.denied) };
    } catch (error) {
      throw new StoreError('Could not read the channel list.', { cause: error });
    }
  };
  const write = async (value: { allowed: string[]; denied: string[] }): Promise<void> => {
    try {
      await keyv.set(key, value);
    } catch (error) {
      throw new StoreError('Could not save the channel list.', { cause: error });
    }
  };
  const change = async (platform: string, channelId: string, target: 'allowed' | 'denied' | undefined): Promise<void> => {
    const entry = `${platform}:${channelId}`;
    const lists = await read();
    const next = { allowed: lists.allowed.filter((item) => item !== entry), denied: lists.denied.filter((item) => item !== entry) };
    if (target) next[target].push(entry);
    await write(next);
  };
  return {
    async isAllowed(requester) {
      if (!requester.channelId) return true;
      const entry = `${requester.platform}:${requester.channelId}`;
      const lists = await read();
      if (lists.denied.includes(entry)) return false;
      const platformAllowList = lists.allowed.filter((item) => item.startsWith(`${requester.platform}:`));
      return platformAllowList.length === 0 || platformAllowList.includes(entry);
    },
    allow: (platform, channelId) => change(platform, channelId, 'allowed'),
    deny: (platform, channelId) => change(platform, channelId, 'denied'),
    clear: (platform, channelId) => change(platform, channelId, undefined),
    list: read,
  };
}

/**
 * {@link LimitControls} that change the configuration object the generation service was built
 * with. QueueGenerationService reads these four settings on every admission, so a change applies
 * to the next request of every user; it is not persisted (a restart goes back to the environment).
 */
export function configLimitControls(config: Pick<Config, 'rateLimitPerMinute' | 'rateLimitBurst' | 'maxRunningPerUser' | 'maxQueuedPerUser'>): LimitControls {
  const read = (): LimitValues => ({ ratePerMinute: config.rateLimitPerMinute, burst: config.rateLimitBurst, maxRunning: config.maxRunningPerUser, maxQueued: config.maxQueuedPerUser });
  return {
    getLimits: read,
    setLimits(changes) {
      for (const [field, value] of Object.entries(changes) as Array<[keyof LimitValues, number | undefined]>) {
        if (value === undefined) continue;
        const range = limitRanges[field];
        if (!Number.isInteger(value) || value < range.min || value > range.max) throw new RangeError(`${field} must be an integer ${range.min}..${range.max}`);
      }
      if (changes.ratePerMinute !== undefined) config.rateLimitPerMinute = changes.ratePerMinute;
      if (changes.burst !== undefined) config.rateLimitBurst = changes.burst;
      if (changes.maxRunning !== undefined) config.maxRunningPerUser = changes.maxRunning;
      if (changes.maxQueued !== undefined) config.maxQueuedPerUser = changes.maxQueued;
      return read();
    },
  };
}
