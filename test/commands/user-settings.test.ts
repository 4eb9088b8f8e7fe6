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
