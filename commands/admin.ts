/**
 * What the `admin` command controls, as interfaces the service (or anything else) implements:
 * runtime limits ({@link LimitControls}, a contract of the core in src/service/limits.ts, with
 * configuration-backed implementations here) and a channel allow/deny list ({@link ChannelPolicy},
 * with a Keyv-backed implementation here). Who is an admin: the adapter's `requester.isAdmin`, or
 * `ADMIN_USERS` (`platform:userId` entries).
 */
import Keyv from 'keyv';
import type { Requester } from '../src/service/types.js';
import { StoreError } from '../src/errors.js';
import type { Config } from '../src/config/config.js';
import { checkLimitChanges, withOverrides, type LimitControls, type LimitValues } from '../src/service/limits.js';

// The limits contract is the core's (the generation services implement it); commands re-export it.
export { limitRanges, type LimitControls, type LimitValues } from '../src/service/limits.js';

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

type LimitSettings = Pick<Config, 'rateLimitPerMinute' | 'rateLimitBurst' | 'maxRunningPerUser' | 'maxQueuedPerUser'>;

const readLimits = (config: LimitSettings): LimitValues => ({ ratePerMinute: config.rateLimitPerMinute, burst: config.rateLimitBurst, maxRunning: config.maxRunningPerUser, maxQueued: config.maxQueuedPerUser });

function writeLimits(config: LimitSettings, changes: Partial<LimitValues>): void {
  if (changes.ratePerMinute !== undefined) config.rateLimitPerMinute = changes.ratePerMinute;
  if (changes.burst !== undefined) config.rateLimitBurst = changes.burst;
  if (changes.maxRunning !== undefined) config.maxRunningPerUser = changes.maxRunning;
  if (changes.maxQueued !== undefined) config.maxQueuedPerUser = changes.maxQueued;
}

/**
 * {@link LimitControls} that change the configuration object the generation service was built
 * with. QueueGenerationService reads these four settings on every admission, so a change applies
 * to the next request of every user; it is not persisted (a restart goes back to the environment).
 * For QUEUE=memory with persistence see {@link openStoredLimitControls}; QUEUE=redis uses the
 * service's own controls, shared by every bot process.
 */
export function configLimitControls(config: LimitSettings): LimitControls {
  return {
    getLimits: () => readLimits(config),
    setLimits(changes) {
      writeLimits(config, checkLimitChanges(changes));
      return readLimits(config);
    },
  };
}

const storedLimitsKey = 'overrides';

/**
 * {@link configLimitControls} whose changes are also kept in Keyv, so that they survive a restart:
 * the stored overrides are applied to the configuration object here, before any request. They
 * beat the environment until changed again with `admin set-limit`.
 */
export async function openStoredLimitControls(config: LimitSettings, keyv: Keyv): Promise<LimitControls> {
  let stored: Partial<LimitValues>;
  try {
    stored = (await keyv.get<Partial<LimitValues>>(storedLimitsKey)) ?? {};
  } catch (error) {
    throw new StoreError('Could not read the saved limits.', { cause: error });
  }
  writeLimits(config, withOverrides(readLimits(config), stored));
  return {
    getLimits: () => readLimits(config),
    async setLimits(changes) {
      const checked = checkLimitChanges(changes);
      try {
        const current = (await keyv.get<Partial<LimitValues>>(storedLimitsKey)) ?? {};
        await keyv.set(storedLimitsKey, { ...current, ...checked });
      } catch (error) {
        throw new StoreError('Could not save the limits.', { cause: error });
      }
      // Applied only once saved, so that a failed save changes nothing.
      writeLimits(config, checked);
      return readLimits(config);
    },
  };
}
