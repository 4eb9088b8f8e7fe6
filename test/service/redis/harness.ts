/**
 * Helpers for the QUEUE=redis tests: is Redis there, unique queue names and store namespaces per
 * test, in-process workers and bots over FakeEngine, child processes, and cleaning up.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../../../src/config/config.js';
import { createJobStore, type JobStore } from '../../../src/service/job-store.js';
import { RedisKeys, type QueueNames } from '../../../src/service/redis/keys.js';
import { createRedisGenerationService, type RedisGenerationService, type RedisGenerationServiceOptions } from '../../../src/service/redis/redis-service.js';
import { startRedisWorker, type RedisWorker, type WorkerTimings } from '../../../src/service/redis/worker.js';
import { FakeEngine } from '../../fakes/fake-engine.js';
import { testConfig } from '../helpers.js';

export const redisUrl = process.env.IMAGINE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const here = path.dirname(fileURLToPath(import.meta.url));

/** True when a Redis answers at {@link redisUrl}. */
export async function redisAvailable(): Promise<boolean> {
  const client = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** Fast stalled-job recovery for tests: a killed worker's job is back in about 1–2 s. */
export const testTimings: Partial<WorkerTimings> = { lockDurationMs: 1000, stalledIntervalMs: 500, parkMs: 300 };

/**
 * A factory of Deployments for one test file: registers an afterEach that cleans up every
 * Deployment the factory made during the test.
 */
export function deploymentsCleanedAfterEach(): (label: string) => Deployment {
  const created: Deployment[] = [];
  afterEach(async () => {
    for (const deployment of created.splice(0)) await deployment.cleanup();
  });
  return (label) => {
    const deployment = new Deployment(label);
    created.push(deployment);
    return deployment;
  };
}

/** One isolated deployment: its own queue, key prefix and job store namespace. */
export class Deployment {
  readonly names: QueueNames;
  readonly namespace: string;
  readonly keys: RedisKeys;
  private readonly closers: Array<() => Promise<void>> = [];

  constructor(readonly label = 'test') {
    const id = randomBytes(4).toString('hex');
    this.names = { prefix: `imagine-test-${id}`, queue: label };
    this.namespace = `imagine-test-${id}:jobs`;
    this.keys = new RedisKeys(this.names);
  }

  config(overrides: Partial<Config> = {}): Config {
    return testConfig({ queue: 'redis', redisUrl, storeUrl: redisUrl, ...overrides });
  }

  store(config = this.config()): Promise<JobStore> {
    return createJobStore(config, { namespace: this.namespace });
  }

  /** An in-process GPU worker over an engine. */
  async worker(engine: FakeEngine, options: { config?: Partial<Config>; concurrency?: number; timings?: Partial<WorkerTimings>; id?: string } = {}): Promise<RedisWorker> {
    const config = this.config(options.config);
    const worker = await startRedisWorker({
      config,
      engine,
      store: await this.store(config),
      names: this.names,
      timings: { ...testTimings, ...options.timings },
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      ...(options.id ? { id: options.id } : {}),
    });
    this.closers.push(() => worker.close(0));
    return worker;
  }

  /** An in-process bot service. */
  async bot(options: Partial<RedisGenerationServiceOptions> & { configOverrides?: Partial<Config> } = {}): Promise<RedisGenerationService> {
    const { configOverrides, ...rest } = options;
    const config = options.config ?? this.config(configOverrides);
    const service = await createRedisGenerationService({ store: await this.store(config), names: this.names, capabilitiesTimeoutMs: 20_000, refreshIntervalMs: 200, ...rest, config });
    this.closers.push(() => service.shutdown(0));
    return service;
  }

  /** Spawns a child process running one of the entries in this folder; it answers on IPC. */
  spawn(entry: 'worker-process.ts' | 'bot-process.ts', env: Record<string, string>): ChildHandle {
    const child = fork(path.join(here, entry), [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, NODE_OPTIONS: '', IMAGINE_TEST_REDIS_URL: redisUrl, IMAGINE_TEST_PREFIX: this.names.prefix, IMAGINE_TEST_QUEUE: this.names.queue, IMAGINE_TEST_NAMESPACE: this.namespace, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const handle = new ChildHandle(child);
    this.closers.push(() => handle.stop());
    return handle;
  }

  /** Closes everything started here, removes the queue and every key of this deployment. */
  async cleanup(): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) await close().catch(() => undefined);
    const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      const queue = new Queue(this.names.queue, { connection: client, prefix: this.names.prefix });
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      for (const pattern of [`${this.names.prefix}:*`, `${this.namespace}*`]) {
        let cursor = '0';
        do {
          const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
          cursor = next;
          if (keys.length > 0) await client.del(...keys);
        } while (cursor !== '0');
      }
    } finally {
      client.disconnect();
    }
  }
}

/** A child process and the messages it sent. */
export class ChildHandle {
  readonly messages: Array<Record<string, unknown>> = [];
  private readonly waiters: Array<{ predicate: (message: Record<string, unknown>) => boolean; resolve: (message: Record<string, unknown>) => void }> = [];
  readonly exited: Promise<number | null>;
  private requests = 0;

  constructor(readonly child: ChildProcess) {
    child.on('message', (message: Record<string, unknown>) => {
      this.messages.push(message);
      for (const waiter of [...this.waiters]) {
        if (waiter.predicate(message)) {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          waiter.resolve(message);
        }
      }
    });
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** The first message (past or future) that matches. */
  waitFor(predicate: (message: Record<string, unknown>) => boolean, what: string, limitMs = 30_000): Promise<Record<string, unknown>> {
    const found = this.messages.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), limitMs);
      // A wait that lost a race (another child answered) must not keep the test process alive.
      timer.unref();
      this.waiters.push({ predicate, resolve: (message) => {
        clearTimeout(timer);
        resolve(message);
      } });
    });
  }

  /** Sends a request and waits for its answer. */
  async request(body: Record<string, unknown>, limitMs = 30_000): Promise<Record<string, unknown>> {
    const requestId = ++this.requests;
    this.child.send({ ...body, requestId });
    return this.waitFor((message) => message.type === 'reply' && message.requestId === requestId, `reply to ${String(body.command)}`, limitMs);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Reads the configuration of a child process from its environment. */
export function childDeployment(): { names: QueueNames; namespace: string; redisUrl: string } {
  return {
    names: { prefix: process.env.IMAGINE_TEST_PREFIX!, queue: process.env.IMAGINE_TEST_QUEUE! },
    namespace: process.env.IMAGINE_TEST_NAMESPACE!,
    redisUrl: process.env.IMAGINE_TEST_REDIS_URL ?? redisUrl,
  };
}

export { FakeEngine };

/** Polls an async condition until it holds (never a wall-clock assertion). */
export async function eventually(check: () => Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > limitMs) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
