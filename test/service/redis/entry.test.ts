/**
 * The process entries in QUEUE=redis: `npm run worker` (startWorker) and `npm start` (main's
 * start), with a FakeEngine in the worker. main.ts uses the default queue names, so this test
 * removes the keys of those names afterwards.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { ConfigError, ErrorCode } from '../../../src/errors.js';
import { start } from '../../../adapters/main.js';
import { defaultQueueNames, RedisKeys } from '../../../src/service/redis/keys.js';
import { RedisGenerationService } from '../../../src/service/redis/redis-service.js';
import { startWorker } from '../../../src/worker.js';
import { FakeEngine } from '../../fakes/fake-engine.js';
import { params, recordingListener, user } from '../helpers.js';
import { redisAvailable, redisUrl } from './harness.js';

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the QUEUE=redis entry tests: no Redis answers on 127.0.0.1:6379.');

const environment = { QUEUE: 'redis', REDIS_URL: redisUrl, PORT: '0', LOG_LEVEL: 'silent', PLAYGROUND: 'off', DATA_DIR: '/tmp/imagine-entry-test' };

test('npm run worker refuses to start without QUEUE=redis, naming the variable', async () => {
  const error = await startWorker({ env: { ...environment, QUEUE: 'memory' }, dotenvPath: false, createEngine: async () => new FakeEngine() }).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).message).toMatch(/QUEUE.*npm run worker.*QUEUE=redis/);
});

(redisUp ? describe : describe.skip)('QUEUE=redis entries', () => {
  const jobIds: string[] = [];

  afterAll(async () => {
    const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      const queue = new Queue(defaultQueueNames.queue, { connection: client, prefix: defaultQueueNames.prefix });
      for (const id of jobIds) await queue.remove(id).catch(() => undefined);
      // Only when nothing runs there: never force-clear a queue someone else may be using.
      await queue.obliterate().catch(() => undefined);
      await queue.close();
      const keys = new RedisKeys(defaultQueueNames);
      const owned = await client.keys(keys.pattern);
      if (owned.length > 0) await client.del(...owned);
      for (const id of jobIds) {
        const records = await client.keys(`imagine:jobs*${id}*`);
        if (records.length > 0) await client.del(...records);
      }
    } finally {
      client.disconnect();
    }
  });

  test('a worker process and a bot process: the bot loads no model, the job runs on the worker', async () => {
    const engine = new FakeEngine({ name: 'fake engine on a worker' });
    const worker = await startWorker({ env: environment, dotenvPath: false, createEngine: async () => engine });
    try {
      const health = await fetch(`${worker.url}/healthz`);
      expect(health.status).toBe(200);
      let modelsLoaded = 0;
      const app = await start({ env: environment, dotenvPath: false, createEngine: async () => {
        modelsLoaded += 1;
        return new FakeEngine();
      } });
      try {
        expect(app.service).toBeInstanceOf(RedisGenerationService);
        // Admin limit changes go to Redis through the service, shared by every bot process.
        expect(app.commandSettings.limitControls).toBe(app.service);
        expect(modelsLoaded).toBe(0);
        expect(app.engine.capabilities.name).toBe('fake engine on a worker');
        await expect(app.engine.generate({ prompt: 'x', width: 8, height: 8, seeds: [1] })).rejects.toMatchObject({ code: ErrorCode.Unsupported });
        const listener = recordingListener();
        const ticket = await app.service.imagine(user('entry'), params('through the queue'), listener);
        jobIds.push(ticket.job.id);
        expect((await listener.settled).type).toBe('completed');
        expect(engine.calls.map((call) => call.prompt)).toEqual(['through the queue']);
        expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
        const metrics = await (await fetch(`${worker.url}/metrics`)).text();
        expect(metrics).toContain('imagine_jobs_completed_total{kind="imagine"} 1');
        expect(metrics).toContain('imagine_slots 1');
      } finally {
        await app.stop();
      }
    } finally {
      await worker.stop();
    }
    expect(engine.closed).toBe(true);
  });
});

test('an unreachable Redis stops a bot and a worker at start-up with a clear message and no password', async () => {
  const { createRedisGenerationService } = await import('../../../src/service/redis/redis-service.js');
  const { loadConfig } = await import('../../../src/config/config.js');
  const config = loadConfig({ queue: 'redis', redisUrl: 'redis://:sekret-password-1@127.0.0.1:1', storeUrl: 'memory://', logLevel: 'silent' }, {}, false);
  const botError = await createRedisGenerationService({ config }).catch((caught: unknown) => caught);
  expect(botError).toMatchObject({ code: ErrorCode.Store, message: expect.stringMatching(/^Redis at redis:\/\/:\[redacted\]@127\.0\.0\.1:1 is not reachable .*REDIS_URL/) });
  expect(String((botError as Error).message)).not.toContain('sekret-password-1');
  const workerError = await startWorker({ env: { ...environment, REDIS_URL: 'redis://:sekret-password-1@127.0.0.1:1', STORE_URL: 'memory://' }, dotenvPath: false, http: false, createEngine: async () => new FakeEngine() }).catch((caught: unknown) => caught);
  expect(workerError).toMatchObject({ code: ErrorCode.Store, message: expect.stringContaining('is not reachable') });
  expect(String((workerError as Error).message)).not.toContain('sekret-password-1');
});
