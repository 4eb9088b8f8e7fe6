/**
 * `npm run worker`: a GPU worker for QUEUE=redis. Loads the configured model (its own engine,
 * GPU_SLOTS jobs at once), takes jobs from the shared BullMQ queue and serves /healthz and
 * /metrics on PORT. SIGINT/SIGTERM stop taking jobs and let running ones finish within
 * SHUTDOWN_GRACE_SECONDS; any still running then go back to the queue for another worker.
 */
import path from 'node:path';
import { loadConfig, settings, type Config, type ConfigOptions } from './config/config.js';
import type { ImageEngine } from './engine/engine.js';
import { ConfigError, startupFailureText } from './errors.js';
import { createHttpServer, healthAndMetrics, type HttpServerHandle } from './http/server.js';
import { serviceHealth, serviceMetrics } from './http/service-probes.js';
import { createLogger, type Logger } from './logger.js';
import { isEntryPoint, runUntilSignalled } from './process-lifecycle.js';
import type { JobStore } from './service/job-store.js';
import type { QueueNames } from './service/redis/keys.js';
import { startRedisWorker, type RedisWorker, type WorkerTimings } from './service/redis/worker.js';

/** Options of {@link startWorker}; everything defaults to the real thing. */
export interface StartWorkerOptions {
  config?: ConfigOptions;
  env?: NodeJS.ProcessEnv;
  /** The .env file to read, or false for none. Default `./.env`. */
  dotenvPath?: string | false;
  logger?: Logger;
  /** Builds the engine; default `createEngine` from src/engine/factory.ts (in a worker thread). */
  createEngine?: (config: Config) => Promise<ImageEngine>;
  /** Opens the job store; default `createJobStore` from the configuration. */
  createStore?: (config: Config) => Promise<JobStore>;
  names?: Partial<QueueNames>;
  timings?: Partial<WorkerTimings>;
  /** Serve /healthz and /metrics (default true). */
  http?: boolean;
}

/** A running GPU worker process. */
export interface RunningWorker {
  config: Config;
  worker: RedisWorker;
  engine: ImageEngine;
  /** The /healthz and /metrics server's address, when served. */
  url: string | undefined;
  /** Graceful stop: no new jobs, running ones finish (or go back to the queue), all closes. */
  stop(): Promise<void>;
}

async function defaultEngine(config: Config): Promise<ImageEngine> {
  const { createEngine } = await import('./engine/factory.js');
  return createEngine(config);
}

/** Starts a GPU worker. Throws ConfigError when QUEUE is not redis, and ModelError as the engine does. */
export async function startWorker(options: StartWorkerOptions = {}): Promise<RunningWorker> {
  const config = loadConfig(options.config ?? {}, options.env ?? process.env, options.dotenvPath ?? path.resolve('.env'));
  if (config.queue !== 'redis') {
    throw new ConfigError(settings.queue.variable, settings.queue.accepted, `is "${config.queue}", but \`npm run worker\` serves a shared queue: set QUEUE=redis and REDIS_URL (and run the bot with the same)`, 'queue');
  }
  const logger = options.logger ?? createLogger(config);
  let worker: RedisWorker | undefined;
  let engine: ImageEngine | undefined;
  let server: HttpServerHandle | undefined;
  const stopAll = async (): Promise<void> => {
    await worker?.close().catch((error: unknown) => logger.warn({ err: error }, 'worker shutdown failed'));
    await engine?.close().catch((error: unknown) => logger.warn({ err: error }, 'engine close failed'));
    await server?.close();
  };
  try {
    if (options.http ?? true) {
      server = await createHttpServer({
        host: config.host,
        port: config.port,
        logger,
        handlers: [healthAndMetrics({ health: serviceHealth(() => worker), metrics: serviceMetrics(() => worker) })],
      });
    }
    logger.info({ model: config.model, slots: config.gpuSlots }, 'loading the model');
    engine = await (options.createEngine ?? defaultEngine)(config);
    const store = options.createStore ? await options.createStore(config) : undefined;
    worker = await startRedisWorker({ config, engine, logger, ...(store ? { store } : {}), ...(options.names ? { names: options.names } : {}), ...(options.timings ? { timings: options.timings } : {}) });
    const finalWorker = worker;
    const finalEngine = engine;
    let stopping: Promise<void> | undefined;
    return { config, worker: finalWorker, engine: finalEngine, url: server?.url, stop: () => (stopping ??= stopAll()) };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The process entry: starts, wires signals, and sets the exit code. */
export async function main(): Promise<void> {
  await runUntilSignalled(() => startWorker(), {
    startupFailure: (error) => startupFailureText(error).replace('Imagine could not start', 'The Imagine worker could not start'),
    stopping: (signal, running) => `Received ${signal}; finishing running jobs (up to ${running.config.shutdownGraceSeconds} s, then they go back to the queue).`,
    exitingNow: (signal) => `Received ${signal} again; exiting now (running jobs will be retried by other workers).`,
  });
}

if (isEntryPoint(import.meta.url)) {
  void main();
}
