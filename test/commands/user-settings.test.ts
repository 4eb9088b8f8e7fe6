import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Keyv from 'keyv';
import { createChannelPolicy } from '../../commands/admin.js';
import { createUserSettingsStore, openUserSettingsStore, type UserSettingsStore } from '../../commands/user-settings.js';
import { StoreError } from '../../src/errors.js';

const ada = { platform: 'discord', userId: '1' };
const adaOnSlack = { platform: 'slack', userId: '1' };

async function contract(store: UserSettingsStore): Promise<void> {
  expect(await store.get(ada)).toEqual({});
  expect(await store.update(ada, { aspectRatio: '16:9' })).toEqual({ aspectRatio: '16:9' });
  expect(await store.update(ada, { variationStrength: 'subtle' })).toEqual({ aspectRatio: '16:9', variationStrength: 'subtle' });
  expect(await store.get(adaOnSlack)).toEqual({});
  expect(await store.update(ada, { aspectRatio: null })).toEqual({ variationStrength: 'subtle' });
  await store.reset(ada);
  expect(await store.get(ada)).toEqual({});
}

describe('user settings', () => {
  test('the in-memory store keeps users apart, merges, clears and resets', async () => {
    await contract(createUserSettingsStore());
  });

  test('the SQLite store does the same and survives reopening', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'imagine-settings-'));
    try {
      const config = { storeUrl: undefined, dataDir, queue: 'memory' as const, redisUrl: 'redis://127.0.0.1:6379' };
      const first = await openUserSettingsStore(config);
      await contract(first);
      await first.update(ada, { aspectRatio: '2:3' });
      await first.close();
      const second = await openUserSettingsStore(config);
      expect(await second.get(ada)).toEqual({ aspectRatio: '2:3' });
      await second.close();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('garbage in the store is ignored, and store failures become StoreError', async () => {
    const keyv = new Keyv();
    await keyv.set('discord:1', { aspectRatio: 'DROP TABLE', variationStrength: 'extreme' });
    expect(await createUserSettingsStore(keyv).get(ada)).toEqual({});
    const broken = new Keyv({
      store: {
        get: async () => {
          throw new Error('disk on fire');
        },
        set: async () => false,
        delete: async () => false,
        clear: async () => undefined,
      } as never,
      throwOnErrors: true,
    } as never);
    await expect(createUserSettingsStore(broken).get(ada)).rejects.toBeInstanceOf(StoreError);
  });
});

describe('channel policy', () => {
  test('deny beats allow; an allow list limits only its platform; DMs are always allowed', async () => {
    const policy = createChannelPolicy();
    expect(await policy.isAllowed({ platform: 'discord', channelId: 'a' })).toBe(true);
    await policy.allow('discord', 'a');
    expect(await policy.isAllowed({ platform: 'discord', channelId: 'a' })).toBe(true);
    expect(await policy.isAllowed({ platform: 'discord', channelId: 'b' })).toBe(false);
    expect(await policy.isAllowed({ platform: 'slack', channelId: 'b' })).toBe(true);
    expect(await policy.isAllowed({ platform: 'discord' })).toBe(true);
    await policy.deny('discord', 'a');
    expect(await policy.isAllowed({ platform: 'discord', channelId: 'a' })).toBe(false);
    expect(await policy.list()).toEqual({ allowed: [], denied: ['discord:a'] });
    await policy.clear('discord', 'a');
    expect(await policy.list()).toEqual({ allowed: [], denied: [] });
  });
});

describe('openCommandSettings', () => {
  test('opens persistent stores next to the job store and wires limits (kept too) and engine sizes', async () => {
    const { openCommandSettings } = await import('../../commands/command-settings.js');
    const { loadConfig } = await import('../../src/config/config.js');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'imagine-command-settings-'));
    try {
      const config = loadConfig({ dataDir, logLevel: 'silent' }, {}, false);
      const sizes = { '1:1': { width: 8, height: 8 }, '2:1': { width: 16, height: 8 } };
      const first = await openCommandSettings({ config, capabilities: { sizes, limits: { minSteps: 1, maxSteps: 9, minGuidance: 0, maxGuidance: 9 } } });
      expect(first.aspectRatios).toEqual(['1:1', '2:1']);
      await first.userSettings!.update(ada, { aspectRatio: '2:1' });
      await first.channels!.deny('discord', 'c9');
      await first.limitControls!.setLimits({ burst: 7 });
      expect(config.rateLimitBurst).toBe(7);
      await first.close();
      // A restart: a fresh configuration from the environment, the saved limit change applied to it.
      const restartedConfig = loadConfig({ dataDir, logLevel: 'silent' }, {}, false);
      expect(restartedConfig.rateLimitBurst).not.toBe(7);
      const second = await openCommandSettings({ config: restartedConfig });
      expect(await second.userSettings!.get(ada)).toEqual({ aspectRatio: '2:1' });
      expect(await second.channels!.isAllowed({ platform: 'discord', channelId: 'c9' })).toBe(false);
      expect(restartedConfig.rateLimitBurst).toBe(7);
      expect(await second.limitControls!.getLimits()).toMatchObject({ burst: 7 });
      await second.close();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('limit controls given by the service (QUEUE=redis) are used instead of the configuration', async () => {
    const { openCommandSettings } = await import('../../commands/command-settings.js');
    const { loadConfig } = await import('../../src/config/config.js');
    const config = loadConfig({ logLevel: 'silent' }, {}, false);
    const limitControls = { getLimits: () => ({ ratePerMinute: 1, burst: 1, maxRunning: 1, maxQueued: 0 }), setLimits: () => ({ ratePerMinute: 1, burst: 1, maxRunning: 1, maxQueued: 0 }) };
    const settings = await openCommandSettings({ config, inMemory: true, limitControls });
    expect(settings.limitControls).toBe(limitControls);
    await settings.close();
  });

  test('a bad regular expression in BLOCKED_WORDS stops start-up with a ConfigError', async () => {
    const { openCommandSettings } = await import('../../commands/command-settings.js');
    const { loadConfig } = await import('../../src/config/config.js');
    const { ConfigError } = await import('../../src/errors.js');
    const config = loadConfig({ blockedWords: ['/(unclosed/'], logLevel: 'silent' }, {}, false);
    await expect(openCommandSettings({ config, inMemory: true })).rejects.toBeInstanceOf(ConfigError);
  });
});
