/**
 * Admins' runtime limit changes in QUEUE=redis: kept in the deployment's limits hash, read by the
 * admission and claim scripts, so that every bot (here: several services in this process over
 * one Redis) enforces them at once and they outlive a restart. Across child processes: scale.test.ts.
 */
import { Redis } from 'ioredis';
import { createChannelPolicy } from '../../../commands/admin.js';
import { commandSettingsFor, runCommand, type CommandReply } from '../../../commands/dispatch.js';
import { ErrorCode } from '../../../src/errors.js';
import { AdmissionScripts } from '../../../src/service/redis/scripts.js';
import type { RedisGenerationService } from '../../../src/service/redis/redis-service.js';
import type { Requester } from '../../../src/service/types.js';
import { FakeEngine } from '../../fakes/fake-engine.js';
import { params, recordingListener, user } from '../helpers.js';
import { configuredLimits, limitControlsContract } from '../limit-controls-contract.js';
import { deploymentsCleanedAfterEach, redisAvailable, redisUrl } from './harness.js';

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the QUEUE=redis limit tests: no Redis answers on 127.0.0.1:6379 (.ci/run starts one).');

const deployment = deploymentsCleanedAfterEach();

const capabilities = new FakeEngine().capabilities;
/** Generous rate limits, so that only the limit under test refuses. */
const roomy = { rateLimitPerMinute: 1000, rateLimitBurst: 100, maxRunningPerUser: 1, maxQueuedPerUser: 5 };

/** Admits one job for `id` without a worker (it stays waiting); the error code when refused. */
async function tryImagine(bot: RedisGenerationService, id: string): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
  return bot.imagine(user(id), params(`job of ${id}`), recordingListener()).then(
    () => ({ ok: true as const }),
    (error: { code: string; message: string }) => ({ ok: false as const, code: error.code, message: error.message }),
  );
}

(redisUp ? describe : describe.skip)('QUEUE=redis runtime limits', () => {
  limitControlsContract('RedisGenerationService (the deployment\'s limits hash)', async (configured) => {
    const scene = deployment('contract');
    const config = { rateLimitPerMinute: configured.ratePerMinute, rateLimitBurst: configured.burst, maxRunningPerUser: configured.maxRunning, maxQueuedPerUser: configured.maxQueued };
    const first = await scene.bot({ configOverrides: config, capabilities });
    return {
      controls: first,
      reopen: async () => {
        await first.shutdown(0);
        return scene.bot({ configOverrides: config, capabilities });
      },
    };
  });

  test('a change through one bot is enforced, reported by info and read back by another bot at once', async () => {
    const scene = deployment('shared');
    const [one, two] = [await scene.bot({ configOverrides: roomy, capabilities }), await scene.bot({ configOverrides: roomy, capabilities })];
    // Configured: one running + five waiting; the second bot takes three of one user's jobs.
    for (let index = 0; index < 3; index += 1) expect(await tryImagine(two, 'before')).toEqual({ ok: true });

    expect(await one.setLimits({ maxQueued: 1 })).toEqual({ ratePerMinute: 1000, burst: 100, maxRunning: 1, maxQueued: 1 });
    expect(await two.getLimits()).toMatchObject({ maxQueued: 1 });
    expect((await two.info(user('after'))).limits).toMatchObject({ maxQueued: 1, maxRunning: 1, burst: 100, ratePerMinute: 1000 });
    expect(await tryImagine(two, 'after')).toEqual({ ok: true });
    expect(await tryImagine(two, 'after')).toEqual({ ok: true });
    const refused = await tryImagine(two, 'after');
    expect(refused).toMatchObject({ ok: false, code: ErrorCode.TooManyQueued, message: expect.stringContaining('the limit is 1') });
    // Jobs admitted before the change stay; the user just cannot add more.
    expect(await tryImagine(two, 'before')).toMatchObject({ ok: false, code: ErrorCode.TooManyQueued });
    expect((await two.info(user('before'))).queued).toHaveLength(3);
  });

  test('bots of one deployment share what they have seen in a scope (the Discord endpoint\'s replay signatures)', async () => {
    const scene = deployment('sightings');
    const [one, two] = [await scene.bot({ configOverrides: roomy, capabilities }), await scene.bot({ configOverrides: roomy, capabilities })];
    expect(await one.sightings('discord-replay').claim('signature', 60_000)).toBe(true);
    expect(await two.sightings('discord-replay').claim('signature', 60_000)).toBe(false);
    expect(await two.sightings('another-scope').claim('signature', 60_000)).toBe(true);
  });

  test('a lowered burst and rate apply to the token bucket of every bot, in its refusal and in info', async () => {
    const scene = deployment('rate');
    const [one, two] = [await scene.bot({ configOverrides: roomy, capabilities }), await scene.bot({ configOverrides: roomy, capabilities })];
    await one.setLimits({ burst: 1, ratePerMinute: 1 });
    expect(await tryImagine(two, 'quick')).toEqual({ ok: true });
    const refused = await tryImagine(two, 'quick');
    expect(refused).toMatchObject({ ok: false, code: ErrorCode.RateLimited });
    const info = await one.info(user('quick'));
    expect(info.limits).toMatchObject({ burst: 1, ratePerMinute: 1, tokensLeft: 0 });
    // One token a minute: the next one is under a minute away, not under the configured 1000 a minute.
    expect(info.limits.nextTokenInMs).toBeGreaterThan(1000);
  });

  test('admin set-limit and show-limits through the commands: one bot sets, another shows and enforces', async () => {
    const scene = deployment('commands');
    const configs = [scene.config(roomy), scene.config(roomy)] as const;
    const [one, two] = [await scene.bot({ config: configs[0], capabilities }), await scene.bot({ config: configs[1], capabilities })];
    const root: Requester = { platform: 'test', userId: 'root', isAdmin: true };
    // As main.ts wires QUEUE=redis: the service itself is the commands' limit controls.
    const run = (bot: RedisGenerationService, requester: Requester, name: string, options: Record<string, string | number>): Promise<CommandReply> =>
      runCommand({ service: bot, requester, listener: recordingListener(), settings: commandSettingsFor(configs[bot === one ? 0 : 1], capabilities, { channels: createChannelPolicy(), limitControls: bot }) }, name, options);

    expect((await run(one, root, 'admin', { action: 'set-limit', limit: 'max_queued', value: 0 })).text).toContain('0 queued at most');
    expect((await run(two, root, 'admin', { action: 'show-limits' })).text).toContain('1 running and 0 queued at most');
    expect((await run(two, user('ada'), 'imagine', { prompt: 'first' })).kind).toBe('job');
    const second = await run(two, user('ada'), 'imagine', { prompt: 'second' });
    expect(second).toMatchObject({ kind: 'message', ephemeral: true });
    expect((await run(two, user('ada'), 'info', {})).text).toContain('At most 1 running and 0 queued at once.');
    // The change went to Redis, not into either bot's configuration.
    expect(configs.map((config) => config.maxQueuedPerUser)).toEqual([5, 5]);
  });

  test('limits a bot fixes for some users (limitsFor) beat an admin change; others follow it', async () => {
    const scene = deployment('pinned');
    const bot = await scene.bot({ configOverrides: roomy, capabilities, limitsFor: (requester) => (requester.userId === 'heavy' ? { maxQueued: 50 } : undefined) });
    await bot.setLimits({ maxQueued: 0 });
    for (let index = 0; index < 3; index += 1) expect(await tryImagine(bot, 'heavy')).toEqual({ ok: true });
    expect((await bot.info(user('heavy'))).limits.maxQueued).toBe(50);
    expect(await tryImagine(bot, 'light')).toEqual({ ok: true });
    expect(await tryImagine(bot, 'light')).toMatchObject({ ok: false, code: ErrorCode.TooManyQueued });
  });

  test('a malformed or out-of-range value in the limits hash is ignored: the configured value applies', async () => {
    const scene = deployment('garbage');
    const client = new Redis(redisUrl);
    try {
      await client.hset(scene.keys.limits, { maxQueued: 'lots', burst: '0', maxRunning: '2.5', ratePerMinute: '20000' });
      const bot = await scene.bot({ configOverrides: roomy, capabilities });
      expect(await bot.getLimits()).toEqual({ ratePerMinute: 1000, burst: 100, maxRunning: 1, maxQueued: 5 });
      expect((await bot.info(user('u'))).limits).toMatchObject({ ratePerMinute: 1000, burst: 100, maxRunning: 1, maxQueued: 5 });
      for (let index = 0; index < 6; index += 1) expect(await tryImagine(bot, 'u')).toEqual({ ok: true });
      expect(await tryImagine(bot, 'u')).toMatchObject({ ok: false, code: ErrorCode.TooManyQueued, message: expect.stringContaining('the limit is 5') });
    } finally {
      client.disconnect();
    }
  });

  test('a worker\'s claim follows a changed running limit for jobs admitted before it, unless the bot pinned it', async () => {
    const scene = deployment('claim');
    const client = new Redis(redisUrl);
    try {
      const scripts = new AdmissionScripts(client, scene.keys);
      const now = Date.now();
      const limits = { ...configuredLimits, maxRunning: 1 };
      for (const jobId of ['a', 'b', 'c']) expect((await scripts.admit({ userKey: 'test:u', jobId, now, limits, pressTtlMs: 0 })).kind).toBe('ok');
      expect(await scripts.claim({ userKey: 'test:u', jobId: 'a', now, maxRunning: 1 })).toMatchObject({ kind: 'run' });
      expect(await scripts.claim({ userKey: 'test:u', jobId: 'b', now, maxRunning: 1 })).toEqual({ kind: 'park' });
      await client.hset(scene.keys.limits, 'maxRunning', '2');
      expect(await scripts.claim({ userKey: 'test:u', jobId: 'c', now, maxRunning: 1, maxRunningPinned: true })).toEqual({ kind: 'park' });
      expect(await scripts.claim({ userKey: 'test:u', jobId: 'b', now, maxRunning: 1 })).toMatchObject({ kind: 'run' });
    } finally {
      client.disconnect();
    }
  });
});
