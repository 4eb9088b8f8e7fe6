/**
 * Scale-out (QUEUE=redis): jobs per second with one GPU worker process and with two, and the
 * light-user wait under one heavy user through the shared queue.
 *
 * Throughput: N jobs from N different users (so that per-user limits do not serialise them) go
 * through a bot service in this process to worker processes that run the real engine: the
 * shipped model when models/imagine-shapes/manifest.json exists, else the tiny unCLIP fixture.
 * One worker gets IMAGINE_THREADS = cores; two workers get cores / 2 each, so both runs use the
 * same CPU (on a GPU host, give each worker its own GPU instead). Fairness: as bench/fairness.ts,
 * one heavy user queues 20 jobs, then 10 light users arrive one per job duration; one worker
 * with a FakeEngine of fixed step time.
 *
 *   npm run bench -- scale [--jobs 40] [--model <folder>] [--job-ms 200] [--heavy 20] [--light 10] [--only throughput|fairness]
 *
 * Needs Redis on REDIS_URL (default redis://127.0.0.1:6379). Uses its own queue name and removes
 * its keys afterwards.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig, projectRoot, shippedModel, type Config } from '../src/config/config.js';
import { createJobStore } from '../src/service/job-store.js';
import type { QueueNames } from '../src/service/redis/keys.js';
import { createRedisGenerationService, type RedisGenerationService } from '../src/service/redis/redis-service.js';
import type { ImagineParameters, JobListener, JobRecord } from '../src/service/types.js';
import { option, percentile, round } from './run.js';

const self = fileURLToPath(import.meta.url);
const roleVariable = 'IMAGINE_BENCH_SCALE_ROLE';
const tinyModel = path.join(projectRoot, 'test', 'fixtures', 'models', 'unclip');

interface Scene {
  names: QueueNames;
  namespace: string;
  redisUrl: string;
}

function sceneConfig(scene: Scene, overrides: Partial<Config> = {}): Config {
  return loadConfig({ queue: 'redis', redisUrl: scene.redisUrl, storeUrl: scene.redisUrl, logLevel: 'silent', ...overrides }, {}, false);
}

/** Starts one worker process and resolves once it takes jobs. */
function startWorkerProcess(scene: Scene, env: Record<string, string>): Promise<ChildProcess> {
  const child = fork(self, [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, [roleVariable]: 'worker', BENCH_SCENE: JSON.stringify(scene), ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`a benchmark worker exited with code ${code} before it was ready`)));
  });
}

async function stopWorkerProcesses(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  })));
}

/** The worker role: a real `startWorker` (or a FakeEngine worker for the fairness run). */
async function workerRole(): Promise<void> {
  const scene = JSON.parse(process.env.BENCH_SCENE!) as Scene;
  const { startWorker } = await import('../src/worker.js');
  const fakeJobMs = Number(process.env.BENCH_FAKE_JOB_MS ?? 0);
  let createEngine: ((config: Config) => Promise<import('../src/engine/engine.js').ImageEngine>) | undefined;
  if (fakeJobMs > 0) {
    const { FakeEngine } = await import('../test/fakes/fake-engine.js');
    createEngine = async () => new FakeEngine({ steps: 4, stepDelayMs: fakeJobMs / 4 });
  }
  const running = await startWorker({
    env: { ...process.env, QUEUE: 'redis', REDIS_URL: scene.redisUrl, STORE_URL: scene.redisUrl, LOG_LEVEL: 'warn', PORT: '0' },
    dotenvPath: false,
    http: false,
    names: scene.names,
    createStore: (config) => createJobStore(config, { namespace: scene.namespace }),
    ...(createEngine ? { createEngine } : {}),
  });
  process.send?.('ready');
  process.on('SIGTERM', () => void running.stop().then(() => process.exit(0)));
  process.on('disconnect', () => void running.stop().then(() => process.exit(0)));
}

const parameters = (prompt: string, seed: number): ImagineParameters => ({ prompt, aspectRatio: '1:1', seed, chaos: 0 });

/** Sends jobs and resolves with their finished records. */
function collector(): { listener: () => JobListener; all: () => Promise<JobRecord[]> } {
  const finished: Array<Promise<JobRecord>> = [];
  return {
    listener: () => {
      let done!: (record: JobRecord) => void;
      let fail!: (error: Error) => void;
      finished.push(new Promise<JobRecord>((resolve, reject) => {
        done = resolve;
        fail = reject;
      }));
      return { completed: ({ job }) => done(job), failed: ({ error }) => fail(new Error(`a benchmark job failed: ${error.message}`)) };
    },
    all: () => Promise.all(finished),
  };
}

async function bot(scene: Scene, heavyLimits = 0): Promise<RedisGenerationService> {
  const config = sceneConfig(scene);
  return createRedisGenerationService({
    config,
    store: await createJobStore(config, { namespace: scene.namespace }),
    names: scene.names,
    capabilitiesTimeoutMs: 120_000,
    // Benchmark users may queue as much as the scenario needs.
    limitsFor: (requester) => (requester.userId === 'heavy' ? { maxQueued: heavyLimits, burst: heavyLimits, ratePerMinute: 100_000 } : { ratePerMinute: 100_000, burst: 100 }),
  });
}

/** N jobs from N users through `workers` worker processes; jobs per second from first submit to last result. */
async function throughput(scene: Scene, workers: number, threadsEach: number, jobs: number, model: string): Promise<{ jobsPerSecond: number; meanJobMs: number }> {
  const children = await Promise.all(Array.from({ length: workers }, () => startWorkerProcess(scene, { IMAGINE_MODEL: model, IMAGINE_THREADS: String(threadsEach), GPU_SLOTS: '1' })));
  const service = await bot(scene);
  try {
    // Warm-up: the first calls of a fresh session are slow on every worker.
    const warm = collector();
    for (let index = 0; index < workers * 2; index += 1) await service.imagine({ platform: 'bench', userId: `warm-${index}` }, parameters('warm up', index), warm.listener());
    await warm.all();
    const run = collector();
    const started = Date.now();
    for (let index = 0; index < jobs; index += 1) await service.imagine({ platform: 'bench', userId: `user-${index}` }, parameters(`a red circle ${index}`, 1000 + index), run.listener());
    const records = await run.all();
    const seconds = (Date.now() - started) / 1000;
    return { jobsPerSecond: jobs / seconds, meanJobMs: mean(records.map((record) => record.finishedAt! - record.startedAt!)) };
  } finally {
    await service.shutdown(0);
    await stopWorkerProcesses(children);
  }
}

/** bench/fairness.ts's scenario through the shared queue, one FakeEngine worker process. */
async function fairness(scene: Scene, jobMs: number, heavy: number, light: number): Promise<Record<string, number>> {
  const children = [await startWorkerProcess(scene, { BENCH_FAKE_JOB_MS: String(jobMs), GPU_SLOTS: '1' })];
  const service = await bot(scene, heavy);
  try {
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
    const run = collector();
    const t0 = Date.now();
    for (let index = 0; index < heavy; index += 1) await service.imagine({ platform: 'bench', userId: 'heavy' }, parameters(`heavy ${index}`, index), run.listener());
    for (let index = 0; index < light; index += 1) {
      await sleep(t0 + (index + 0.5) * jobMs - Date.now());
      await service.imagine({ platform: 'bench', userId: `light-${index}` }, parameters(`light ${index}`, 100 + index), run.listener());
    }
    const records = await run.all();
    const measuredJobMs = mean(records.map((record) => record.finishedAt! - record.startedAt!));
    const waits = records.filter((record) => record.requester.userId !== 'heavy').map((record) => (record.startedAt! - record.createdAt) / measuredJobMs);
    const heavyRecords = records.filter((record) => record.requester.userId === 'heavy');
    const heavyDone = Math.max(...heavyRecords.map((record) => record.finishedAt!)) - t0;
    // The fairness itself, apart from speed: heavy jobs that started while a light job waited.
    const overtakes = records
      .filter((record) => record.requester.userId !== 'heavy')
      .map((lightJob) => heavyRecords.filter((heavyJob) => heavyJob.startedAt! > lightJob.createdAt && heavyJob.startedAt! < lightJob.startedAt!).length);
    return {
      heavyJobsStartedWhileALightJobWaitedMax: Math.max(...overtakes),
      lightMedianWaitJobs: round(percentile(waits, 50)),
      lightMaxWaitJobs: round(Math.max(...waits)),
      heavyLastDoneJobs: round(heavyDone / measuredJobMs, 1),
      measuredJobMs: round(measuredJobMs, 1),
    };
  } finally {
    await service.shutdown(0);
    await stopWorkerProcesses(children);
  }
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
}

async function removeScene(scene: Scene): Promise<void> {
  const client = new Redis(scene.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    const queue = new Queue(scene.names.queue, { connection: client, prefix: scene.names.prefix });
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    for (const pattern of [`${scene.names.prefix}:*`, `${scene.namespace}*`]) {
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

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const requested = option(args, 'model');
  const model = requested ?? (existsSync(path.join(shippedModel, 'manifest.json')) ? shippedModel : tinyModel);
  const engineName = model === tinyModel ? 'tiny unCLIP fixture (test/fixtures/models/unclip), onnxruntime cpu' : `${path.relative(projectRoot, model) || model} (onnxruntime cpu)`;
  const jobs = Number(option(args, 'jobs') ?? (model === tinyModel ? 40 : 8));
  const jobMs = Number(option(args, 'job-ms') ?? 200);
  const heavy = Number(option(args, 'heavy') ?? 20);
  const light = Number(option(args, 'light') ?? 10);
  const cores = os.availableParallelism();
  const threadsOne = Math.max(1, cores);
  const threadsEach = Math.max(1, Math.floor(cores / 2));
  const id = randomBytes(4).toString('hex');
  const scene = (label: string): Scene => ({ names: { prefix: `imagine-bench-${id}`, queue: label }, namespace: `imagine-bench-${id}:jobs`, redisUrl });
  const scenes = [scene('one'), scene('two'), scene('fair')];
  try {
    const only = option(args, 'only');
    let one = { jobsPerSecond: Number.NaN, meanJobMs: Number.NaN };
    let two = { jobsPerSecond: Number.NaN, meanJobMs: Number.NaN };
    if (only !== 'fairness') {
      console.log(`engine: ${engineName}; ${jobs} jobs; ${cores} cores`);
      one = await throughput(scenes[0]!, 1, threadsOne, jobs, model);
      console.log(`one worker (${threadsOne} threads): ${round(one.jobsPerSecond)} jobs/s, ${round(one.meanJobMs)} ms a job`);
      two = await throughput(scenes[1]!, 2, threadsEach, jobs, model);
      console.log(`two workers (${threadsEach} threads each): ${round(two.jobsPerSecond)} jobs/s, ${round(two.meanJobMs)} ms a job`);
    }
    let fair: Record<string, number> = {};
    let memory: Record<string, unknown> = {};
    if (only !== 'throughput') {
      fair = await fairness(scenes[2]!, jobMs, heavy, light);
      console.log(`fairness through Redis: light users waited median ${fair.lightMedianWaitJobs}, max ${fair.lightMaxWaitJobs} job durations; heavy jobs that overtook a waiting light job: ${fair.heavyJobsStartedWhileALightJobWaitedMax}`);
      // The same scenario in memory mode, on the same machine now, for comparison.
      const { run: memoryFairness } = await import('./fairness.js');
      memory = ((await memoryFairness(['--job-ms', String(jobMs), '--heavy', String(heavy), '--light', String(light)])).fair ?? {}) as Record<string, unknown>;
    }
    return {
      benchmark: 'scale',
      queue: 'redis (BullMQ), worker processes',
      engine: engineName,
      cores,
      jobs,
      oneWorker: { workers: 1, threadsEach: threadsOne, jobsPerSecond: round(one.jobsPerSecond), meanJobMs: round(one.meanJobMs, 1) },
      twoWorkers: { workers: 2, threadsEach, jobsPerSecond: round(two.jobsPerSecond), meanJobMs: round(two.meanJobMs, 1) },
      speedup: round(two.jobsPerSecond / one.jobsPerSecond),
      fairness: {
        engine: 'FakeEngine (test/fakes/fake-engine.ts), fixed step time, one worker process',
        jobMs,
        heavy,
        light,
        arrivals: 'heavy queues all jobs at t=0; light user i queues one at t=(i+0.5)·job',
        ...fair,
      },
      memoryModeSameScenario: memory,
      note: 'Light users arrive one per nominal job time; when a job cycle takes longer than that (encoding, Redis round trips, a busy machine), light users queue behind each other, so their waits grow in both modes. heavyJobsStartedWhileALightJobWaitedMax measures the ordering alone.',
      target: { heavyJobsStartedWhileALightJobWaitedMax: 0, lightMedianWaitJobs: 1.5 },
      pass: only === 'throughput' || (fair.heavyJobsStartedWhileALightJobWaitedMax === 0 && fair.lightMedianWaitJobs! <= 1.5),
    };
  } finally {
    for (const entry of scenes) await removeScene(entry).catch(() => undefined);
  }
}

if (process.env[roleVariable] === 'worker') {
  workerRole().catch((error: unknown) => {
    process.stderr.write(`benchmark worker: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
