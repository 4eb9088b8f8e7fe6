/**
 * Configuration: every setting, its environment variable, its default and what it accepts, in
 * one table. An explicit option beats an environment variable, which beats the default; a bad
 * value stops start-up with a {@link ConfigError} that names the variable and what it accepts.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseDotenv } from 'dotenv';
import { ConfigError, registerSecret } from '../errors.js';

/** The project's root folder (where package.json lives). */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The model shipped in the repository, used when IMAGINE_MODEL is not set. */
export const shippedModel = path.join(projectRoot, 'models', 'imagine-shapes');

type Parser<T> = (raw: string) => T | undefined;

interface Setting<T> {
  /** The environment variable. */
  variable: string;
  /** The default, or undefined for an optional setting. */
  fallback: T;
  /** Human words for what is accepted, used in errors and the README. */
  accepted: string;
  description: string;
  parse: Parser<T>;
  secret?: boolean;
}

const integer = (min: number, max: number): Parser<number> => (raw) => {
  if (!/^-?\d+$/.test(raw.trim())) return undefined;
  const value = Number(raw);
  return value >= min && value <= max ? value : undefined;
};
const decimal = (min: number, max: number): Parser<number> => (raw) => {
  const value = Number(raw);
  return raw.trim() !== '' && Number.isFinite(value) && value >= min && value <= max ? value : undefined;
};
const oneOf = <T extends string>(...values: T[]): Parser<T> => (raw) => (values as string[]).includes(raw.trim().toLowerCase()) ? (raw.trim().toLowerCase() as T) : undefined;
const text: Parser<string> = (raw) => (raw.trim() === '' ? undefined : raw.trim());
const optionalText: Parser<string | undefined> = (raw) => (raw.trim() === '' ? undefined : raw.trim());
const list: Parser<string[]> = (raw) => raw.split(',').map((item) => item.trim()).filter(Boolean);
const url: Parser<string | undefined> = (raw) => {
  if (raw.trim() === '') return undefined;
  try {
    return new URL(raw.trim()).toString().replace(/\/$/, '');
  } catch {
    return undefined;
  }
};

function setting<T>(variable: string, fallback: T, accepted: string, description: string, parse: Parser<T>, secret = false): Setting<T> {
  return { variable, fallback, accepted, description, parse, secret };
}

/** Every setting with its default: the single source of defaults. */
export const settings = {
  dataDir: setting('DATA_DIR', './data', 'a folder path', 'Where the job store and other state live.', text),
  model: setting('IMAGINE_MODEL', shippedModel, 'a model folder (manifest.json or model_index.json)', 'The model the engine loads; the shipped imagine-shapes model by default.', text),
  gpuSlots: setting('GPU_SLOTS', 1, 'an integer 1..64', 'Jobs that run at once (one engine worker each).', integer(1, 64)),
  logLevel: setting('LOG_LEVEL', 'info' as 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent', 'fatal, error, warn, info, debug, trace or silent', 'How much is logged.', oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent')),
  port: setting('PORT', 3000, 'an integer 0..65535', 'Port of the playground, /healthz and /metrics.', integer(0, 65535)),
  host: setting('HOST', '127.0.0.1', 'a host name or address (0.0.0.0 to expose)', 'Address the web server listens on.', text),
  playground: setting('PLAYGROUND', 'auto' as 'auto' | 'on' | 'off', 'auto, on or off', 'Serve the web playground: auto = only when no platform is configured.', oneOf('auto', 'on', 'off')),
  playgroundPassword: setting('PLAYGROUND_PASSWORD', undefined as string | undefined, 'any text', 'A password the playground asks for (a cookie keeps the browser signed in); none by default.', optionalText, true),
  executionProviders: setting('IMAGINE_EXECUTION_PROVIDERS', ['cpu'], 'a comma list of cpu, cuda, dml, coreml', 'onnxruntime execution providers, in order of preference.', list),
  threads: setting('IMAGINE_THREADS', 0, 'an integer 0..256 (0 = onnxruntime decides)', 'Intra-op threads per engine session.', integer(0, 256)),
  graphOptimization: setting('IMAGINE_GRAPH_OPTIMIZATION', 'all' as 'disabled' | 'basic' | 'extended' | 'all', 'disabled, basic, extended or all', 'onnxruntime graph optimisation level.', oneOf('disabled', 'basic', 'extended', 'all')),
  rateLimitPerMinute: setting('RATE_LIMIT_PER_MINUTE', 10, 'an integer 1..10000', 'Jobs a user may start per minute (token bucket refill).', integer(1, 10000)),
  rateLimitBurst: setting('RATE_LIMIT_BURST', 3, 'an integer 1..1000', 'Jobs a user may start at once before the rate applies.', integer(1, 1000)),
  maxRunningPerUser: setting('MAX_RUNNING_PER_USER', 1, 'an integer 1..100', 'Jobs of one user that may run at once.', integer(1, 100)),
  maxQueuedPerUser: setting('MAX_QUEUED_PER_USER', 5, 'an integer 0..1000', 'Jobs of one user that may wait in the queue.', integer(0, 1000)),
  jobTimeoutSeconds: setting('JOB_TIMEOUT_SECONDS', 300, 'an integer 1..86400', 'A running job is stopped after this long.', integer(1, 86400)),
  jobRetentionDays: setting('JOB_RETENTION_DAYS', 7, 'a number of days 0.001..3650', 'How long job records (and their buttons) are kept.', decimal(0.001, 3650)),
  shutdownGraceSeconds: setting('SHUTDOWN_GRACE_SECONDS', 30, 'an integer 0..3600', 'How long running jobs may finish on shutdown.', integer(0, 3600)),
  shutdownHandover: setting('SHUTDOWN_HANDOVER', 'on' as 'on' | 'off', 'on or off', 'QUEUE=redis: a stopping bot leaves the jobs another bot can post to the next bot instead of failing them.', oneOf('on', 'off')),
  blockedWords: setting('BLOCKED_WORDS', [] as string[], 'a comma list of words or /regular expressions/', 'Prompts containing any of these are refused.', list),
  admins: setting('ADMIN_USERS', [] as string[], 'a comma list of platform:user ids, e.g. discord:123,slack:U456', 'Users who may cancel any job and change limits.', list),
  gridFormat: setting('GRID_FORMAT', 'png' as 'png' | 'webp', 'png or webp', 'Encoding of grids and single images.', oneOf('png', 'webp')),
  uploadLimitBytes: setting('UPLOAD_LIMIT_BYTES', 10 * 1024 * 1024, 'an integer of bytes 1024..104857600', 'Largest upload when the platform does not say.', integer(1024, 100 * 1024 * 1024)),
  queue: setting('QUEUE', 'memory' as 'memory' | 'redis', 'memory or redis', 'Where the job queue lives.', oneOf('memory', 'redis')),
  redisUrl: setting('REDIS_URL', 'redis://127.0.0.1:6379', 'a redis:// URL', 'Redis for QUEUE=redis and the shared store.', text, true),
  storeUrl: setting('STORE_URL', undefined as string | undefined, 'sqlite://path or redis://URL', 'Job store; default a SQLite file under DATA_DIR, or Redis when QUEUE=redis.', optionalText, true),
  discordToken: setting('DISCORD_TOKEN', undefined as string | undefined, 'a Discord bot token', 'Starts the Discord adapter.', optionalText, true),
  discordApplicationId: setting('DISCORD_APPLICATION_ID', undefined as string | undefined, 'a Discord application id', 'The bot application (for registering commands).', optionalText),
  discordPublicKey: setting('DISCORD_PUBLIC_KEY', undefined as string | undefined, 'a hex Ed25519 public key', 'Verifies interactions in HTTP mode.', optionalText),
  discordMode: setting('DISCORD_MODE', 'gateway' as 'gateway' | 'http', 'gateway or http', 'How Discord interactions arrive.', oneOf('gateway', 'http')),
  discordHttpPort: setting('DISCORD_HTTP_PORT', 8787, 'an integer 0..65535', 'Port of the /interactions endpoint in HTTP mode.', integer(0, 65535)),
  discordApiUrl: setting('DISCORD_API_URL', undefined as string | undefined, 'an http(s) URL without the API version', "Discord REST base URL (a proxy, or a fake in tests); Discord's by default.", url),
  discordGuilds: setting('DISCORD_GUILD_ALLOWLIST', [] as string[], 'a comma list of guild ids (empty = all)', 'Guilds where the bot answers.', list),
  discordChannels: setting('DISCORD_CHANNEL_ALLOWLIST', [] as string[], 'a comma list of channel ids (empty = all)', 'Channels where the bot answers.', list),
  slackBotToken: setting('SLACK_BOT_TOKEN', undefined as string | undefined, 'a Slack bot token (xoxb-...)', 'Starts the Slack adapter.', optionalText, true),
  slackSigningSecret: setting('SLACK_SIGNING_SECRET', undefined as string | undefined, 'the Slack app signing secret', 'Verifies requests in HTTP mode.', optionalText, true),
  slackAppToken: setting('SLACK_APP_TOKEN', undefined as string | undefined, 'a Slack app-level token (xapp-...)', 'Socket Mode connection.', optionalText, true),
  slackMode: setting('SLACK_MODE', 'http' as 'http' | 'socket', 'http or socket', 'How Slack events arrive.', oneOf('http', 'socket')),
  slackPort: setting('SLACK_PORT', 3001, 'an integer 0..65535', 'Port of /slack/events in HTTP mode.', integer(0, 65535)),
  slackApiUrl: setting('SLACK_API_URL', undefined as string | undefined, 'an http(s) URL ending in /api/', "Slack Web API base URL; Slack's by default.", url),
} satisfies Record<string, Setting<unknown>>;

type Settings = typeof settings;

/** The validated configuration. */
export type Config = { [K in keyof Settings]: Settings[K]['fallback'] };

/** Options given in code; each beats its environment variable. */
export type ConfigOptions = Partial<Config>;

/**
 * Reads the configuration from options, then the environment, then an optional `.env` file in
 * the working folder, then the defaults. Throws {@link ConfigError} on the first bad value.
 */
export function loadConfig(options: ConfigOptions = {}, environment: NodeJS.ProcessEnv = process.env, dotenvPath: string | false = path.resolve('.env')): Config {
  const fileValues = dotenvPath && existsSync(dotenvPath) ? parseDotenv(readFileSync(dotenvPath)) : {};
  const result: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(settings) as Array<[keyof Settings, Setting<unknown>]>) {
    const explicit = options[key];
    if (explicit !== undefined) {
      result[key] = explicit;
      continue;
    }
    const raw = environment[entry.variable] ?? fileValues[entry.variable];
    if (raw === undefined || raw === '') {
      result[key] = entry.fallback;
      continue;
    }
    const value = entry.parse(raw);
    if (value === undefined && !isOptional(entry)) {
      const shown = entry.secret ? '(hidden)' : JSON.stringify(raw.length > 60 ? `${raw.slice(0, 60)}…` : raw);
      throw new ConfigError(entry.variable, entry.accepted, `has the value ${shown}, which is not accepted`, key);
    }
    if (entry.secret && typeof value === 'string') registerSecret(value);
    result[key] = value;
  }
  const config = result as Config;
  for (const provider of config.executionProviders) {
    if (!['cpu', 'cuda', 'dml', 'coreml'].includes(provider)) {
      throw new ConfigError(settings.executionProviders.variable, settings.executionProviders.accepted, `names the unknown provider "${provider}"`, 'executionProviders');
    }
  }
  if (config.discordMode === 'http' && config.discordToken && !config.discordPublicKey) {
    throw new ConfigError(settings.discordPublicKey.variable, settings.discordPublicKey.accepted, 'is required when DISCORD_MODE=http', 'discordPublicKey');
  }
  if (config.slackBotToken && config.slackMode === 'socket' && !config.slackAppToken) {
    throw new ConfigError(settings.slackAppToken.variable, settings.slackAppToken.accepted, 'is required when SLACK_MODE=socket', 'slackAppToken');
  }
  if (config.slackBotToken && config.slackMode === 'http' && !config.slackSigningSecret) {
    throw new ConfigError(settings.slackSigningSecret.variable, settings.slackSigningSecret.accepted, 'is required when SLACK_MODE=http', 'slackSigningSecret');
  }
  return config;
}

function isOptional(entry: Setting<unknown>): boolean {
  return entry.fallback === undefined && entry.parse === (optionalText as Parser<unknown>);
}

/** The README's table of settings, generated from {@link settings} so that it cannot drift. */
export function settingsTable(): string {
  const rows = Object.values(settings as Record<string, Setting<unknown>>).map((entry) => {
    const fallback = entry.fallback === undefined ? '—' : Array.isArray(entry.fallback) ? (entry.fallback.length ? entry.fallback.join(',') : '(empty)') : entry.fallback === shippedModel ? 'models/imagine-shapes' : String(entry.fallback);
    return `| \`${entry.variable}\` | \`${fallback}\` | ${entry.accepted} | ${entry.description} |`;
  });
  return ['| Variable | Default | Accepts | What it does |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
