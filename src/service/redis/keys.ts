/**
 * Names and connections for QUEUE=redis. BullMQ keeps its keys under `<prefix>:<queue>:`; the
 * scale-out keys (per-user admission state, outputs, worker registry) live under
 * `<prefix>:<queue>:imagine:` so that one prefix + queue name is one deployment, and a test run
 * with its own names never sees another's jobs. Job ids never contain `:` (BullMQ refuses them),
 * so no job key can collide with these.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ImagineError, ErrorCode, redactSecrets } from '../../errors.js';

/** Where one deployment's queue lives. */
export interface QueueNames {
  /** BullMQ key prefix. Default `imagine`. */
  prefix: string;
  /** BullMQ queue name. Default `generation`. */
  queue: string;
}

/** The default names; every bot and worker of a deployment must use the same ones. */
export const defaultQueueNames: QueueNames = { prefix: 'imagine', queue: 'generation' };

/** Every key the scale-out code reads or writes, for one queue. */
export class RedisKeys {
  /** BullMQ's own prefix for this queue, `<prefix>:<queue>:`; a job's hash is this plus its id. */
  readonly jobPrefix: string;
  private readonly base: string;

  constructor(readonly names: QueueNames) {
    this.jobPrefix = `${names.prefix}:${names.queue}:`;
    this.base = `${names.prefix}:${names.queue}:imagine`;
  }

  /** BullMQ lists and sorted sets that hold waiting jobs. */
  get prioritized(): string {
    return `${this.jobPrefix}prioritized`;
  }
  get wait(): string {
    return `${this.jobPrefix}wait`;
  }
  get active(): string {
    return `${this.jobPrefix}active`;
  }
  get delayed(): string {
    return `${this.jobPrefix}delayed`;
  }

  /** A user's token bucket (hash: tokens, at). */
  bucket(userKey: string): string {
    return `${this.base}:user:${userKey}:bucket`;
  }
  /** A user's admitted jobs that have not started (sorted set, score = admission time). */
  queued(userKey: string): string {
    return `${this.base}:user:${userKey}:queued`;
  }
  /** A user's running jobs (sorted set, score = start time). */
  running(userKey: string): string {
    return `${this.base}:user:${userKey}:running`;
  }
  /** The BullMQ priorities of a user's waiting jobs (hash: job id → priority), to keep the user's own jobs in order. */
  priorities(userKey: string): string {
    return `${this.base}:user:${userKey}:priorities`;
  }
  /** A user's jobs put aside because the user already runs as many as allowed (sorted set). */
  parked(userKey: string): string {
    return `${this.base}:user:${userKey}:parked`;
  }
  /** One button press (job, image, action, presser), remembered briefly to drop duplicates. */
  press(signature: string): string {
    return `${this.base}:press:${signature}`;
  }
  /** How many times a job has started (retries after a dead worker count). */
  starts(jobId: string): string {
    return `${this.base}:starts:${jobId}`;
  }
  /** Set when a job is cancelled, so that a worker that picks it up later drops it. */
  cancelled(jobId: string): string {
    return `${this.base}:cancelled:${jobId}`;
  }
  /** Where a platform showed a job that was still running (JSON), merged into its final record. */
  message(jobId: string): string {
    return `${this.base}:message:${jobId}`;
  }
  /** Jobs whose result or failure has not been shown yet (hash: job id → JSON { bot, platform, at }). */
  get undelivered(): string {
    return `${this.base}:undelivered`;
  }
  /** Held (SET NX, with a TTL) by the one bot process that is showing a job's result or failure. */
  delivering(jobId: string): string {
    return `${this.base}:delivering:${jobId}`;
  }
  /** A live bot process's heartbeat (a key with a TTL); its jobs are adopted by others once it lapses. */
  bot(botId: string): string {
    return `${this.botPrefix}${botId}`;
  }
  /** The prefix of {@link bot}, for the Lua scripts. */
  get botPrefix(): string {
    return `${this.base}:bot:`;
  }
  /** The finished file (grid or upscale) of a job, bytes with a TTL. */
  output(jobId: string): string {
    return `${this.base}:output:${jobId}`;
  }
  /** Pub/sub channel on which bots ask workers to stop a running job. */
  get cancelChannel(): string {
    return `${this.base}:cancel`;
  }
  /** The engine capabilities the workers run (JSON), for bots that load no model. */
  get capabilities(): string {
    return `${this.base}:capabilities`;
  }
  /** Live workers (hash: worker id → JSON { slots, seenAt }). */
  get workers(): string {
    return `${this.base}:workers`;
  }
  /**
   * Limits an admin set at runtime for every user of this deployment (hash: ratePerMinute, burst,
   * maxRunning, maxQueued → whole number). A field that is absent leaves the configured value.
   */
  get limits(): string {
    return `${this.base}:limits`;
  }
  /** The prefix of the keys that a `RedisFirstSightings` for `scope` remembers (strings with a TTL). */
  seen(scope: string): string {
    return `${this.base}:seen:${scope}:`;
  }
  /** Moving averages of job durations by kind (hash). */
  get stats(): string {
    return `${this.base}:stats`;
  }
  /** BullMQ's event stream of this queue. */
  get events(): string {
    return `${this.jobPrefix}events`;
  }
  /** A pattern that matches every scale-out key (for tests that clean up). */
  get pattern(): string {
    return `${this.base}:*`;
  }
}

/** Options for {@link connectRedis}. */
export interface ConnectOptions {
  /** BullMQ's Worker and QueueEvents need connections that retry forever (`maxRetriesPerRequest: null`). */
  blocking?: boolean;
  /** A name shown by CLIENT LIST, e.g. `imagine-bot`. */
  name?: string;
  /** Hears connection errors (ioredis retries by itself); without it they are dropped quietly. */
  onError?: (error: Error) => void;
}

/** Opens an ioredis connection to a redis:// URL. Commands on a plain connection fail fast while Redis is down. */
export function connectRedis(url: string, options: ConnectOptions = {}): Redis {
  const settings: RedisOptions = {
    connectTimeout: 5000,
    // How long a closing socket may linger (ioredis waits 2 s by default, even for one that never connected).
    disconnectTimeout: 300,
    enableReadyCheck: true,
    ...(options.name ? { connectionName: options.name } : {}),
    ...(options.blocking ? { maxRetriesPerRequest: null } : { maxRetriesPerRequest: 2, enableOfflineQueue: true }),
    retryStrategy: (attempt) => Math.min(2000, 100 * 2 ** attempt),
  };
  const connection = new Redis(url, settings);
  // Without a listener ioredis prints every failed reconnect as an unhandled error event.
  let reported = false;
  connection.on('error', (error: Error) => {
    if (reported) return;
    reported = true;
    options.onError?.(new Error(redactSecrets(error.message)));
  });
  connection.on('ready', () => (reported = false));
  return connection;
}

/** Resolves once the connection answers PING; rejects with a clear, secret-free error otherwise. */
export async function waitForRedis(connection: Redis, url: string, timeoutMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      connection.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new ImagineError(ErrorCode.Store, `Redis at ${redactSecrets(url)} is not reachable (${redactSecrets(detail)}). QUEUE=redis needs REDIS_URL to point at a running Redis.`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

/** Closes a connection without waiting long for a broken one. */
export async function closeRedis(connection: Redis): Promise<void> {
  try {
    await Promise.race([connection.quit(), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
  } catch {
    // Already closed.
  }
  connection.disconnect();
}

/**
 * Waits for a clean-up step for at most `ms`: while Redis is away, commands on a connection that
 * retries forever would never settle, and a shutdown must not hang on them.
 */
export async function bounded(step: Promise<unknown>, ms = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([step.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
