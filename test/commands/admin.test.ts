/**
 * The limit controls of commands/admin.ts: over the configuration object (what QUEUE=memory's
 * service reads on every admission), and the same kept in Keyv so that changes outlive a restart.
 */
import Keyv from 'keyv';
import { configLimitControls, openStoredLimitControls } from '../../commands/admin.js';
import type { Config } from '../../src/config/config.js';
import { StoreError } from '../../src/errors.js';
import type { LimitValues } from '../../src/service/limits.js';
import { limitControlsContract } from '../service/limit-controls-contract.js';

type LimitSettings = Pick<Config, 'rateLimitPerMinute' | 'rateLimitBurst' | 'maxRunningPerUser' | 'maxQueuedPerUser'>;

const settingsOf = (limits: LimitValues): LimitSettings => ({ rateLimitPerMinute: limits.ratePerMinute, rateLimitBurst: limits.burst, maxRunningPerUser: limits.maxRunning, maxQueuedPerUser: limits.maxQueued });

limitControlsContract('the configuration object', async (configured) => ({ controls: configLimitControls(settingsOf(configured)) }));

limitControlsContract('the configuration object, kept in Keyv', async (configured) => {
  const shared = new Map();
  const open = (): Promise<ReturnType<typeof configLimitControls>> => openStoredLimitControls(settingsOf(configured), new Keyv({ store: shared, namespace: 'limits' }));
  return { controls: await open(), reopen: open };
});

function brokenKeyv(failing: { get?: boolean; set?: boolean }): Keyv {
  const map = new Map<string, unknown>();
  return new Keyv({
    store: {
      get: async (key: string) => {
        if (failing.get) throw new Error('disk on fire');
        return map.get(key);
      },
      set: async (key: string, value: unknown) => {
        if (failing.set) throw new Error('disk full');
        map.set(key, value);
        return true;
      },
      delete: async () => false,
      clear: async () => undefined,
    } as never,
    throwOnErrors: true,
  } as never);
}

describe('limit controls over the configuration', () => {
  test('a change is written into the configuration object the service reads', async () => {
    const config = settingsOf({ ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5 });
    await configLimitControls(config).setLimits({ maxQueued: 2, ratePerMinute: 30 });
    expect(config).toEqual({ rateLimitPerMinute: 30, rateLimitBurst: 3, maxRunningPerUser: 1, maxQueuedPerUser: 2 });
  });

  test('kept in Keyv: saved overrides are applied to the configuration on opening; garbage is ignored', async () => {
    const keyv = new Keyv();
    await keyv.set('overrides', { burst: 8, maxQueued: 'lots', maxRunning: 0, ratePerMinute: 2.5 });
    const config = settingsOf({ ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5 });
    const controls = await openStoredLimitControls(config, keyv);
    expect(config).toEqual({ rateLimitPerMinute: 10, rateLimitBurst: 8, maxRunningPerUser: 1, maxQueuedPerUser: 5 });
    expect(await controls.getLimits()).toEqual({ ratePerMinute: 10, burst: 8, maxRunning: 1, maxQueued: 5 });
  });

  test('kept in Keyv: a failed save is a StoreError and changes nothing; a failed read stops opening', async () => {
    const config = settingsOf({ ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5 });
    const controls = await openStoredLimitControls(config, brokenKeyv({ set: true }));
    await expect(controls.setLimits({ maxQueued: 1 })).rejects.toBeInstanceOf(StoreError);
    expect(config.maxQueuedPerUser).toBe(5);
    expect(await controls.getLimits()).toMatchObject({ maxQueued: 5 });
    await expect(openStoredLimitControls(config, brokenKeyv({ get: true }))).rejects.toBeInstanceOf(StoreError);
  });
});
