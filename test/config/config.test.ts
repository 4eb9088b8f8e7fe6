import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, settings, settingsTable, shippedModel } from '../../src/config/config.js';
import { ConfigError, redactSecrets } from '../../src/errors.js';

const load = (environment: NodeJS.ProcessEnv = {}, options = {}) => loadConfig(options, environment, false);

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  test('every setting has its default with an empty environment', () => {
    const config = load();
    expect(config).toMatchObject({ dataDir: './data', gpuSlots: 1, logLevel: 'info', port: 3000, host: '127.0.0.1', playground: 'auto', rateLimitPerMinute: 10, rateLimitBurst: 3, maxRunningPerUser: 1, maxQueuedPerUser: 5, jobTimeoutSeconds: 300, jobRetentionDays: 7, gridFormat: 'png', uploadLimitBytes: 10 * 1024 * 1024, queue: 'memory' });
    expect(config.model).toBe(shippedModel);
    expect(config.storeUrl).toBeUndefined();
    expect(config.discordToken).toBeUndefined();
  });

  test('environment values are parsed into their types', () => {
    const config = load({ GPU_SLOTS: '4', LOG_LEVEL: 'DEBUG', JOB_RETENTION_DAYS: '0.5', ADMIN_USERS: 'discord:1, slack:U2 ,', IMAGINE_EXECUTION_PROVIDERS: 'cuda,cpu', GRID_FORMAT: 'webp', DISCORD_API_URL: 'http://127.0.0.1:9999/api/' });
    expect(config).toMatchObject({ gpuSlots: 4, logLevel: 'debug', jobRetentionDays: 0.5, admins: ['discord:1', 'slack:U2'], executionProviders: ['cuda', 'cpu'], gridFormat: 'webp', discordApiUrl: 'http://127.0.0.1:9999/api' });
  });

  test('an explicit option beats the environment, which beats .env, which beats the default', () => {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'imagine-config-'));
    try {
      const file = path.join(folder, '.env');
      writeFileSync(file, 'PORT=4000\nGPU_SLOTS=3\nMAX_QUEUED_PER_USER=9\n');
      const config = loadConfig({ port: 5000 }, { GPU_SLOTS: '2' }, file);
      expect([config.port, config.gpuSlots, config.maxQueuedPerUser]).toEqual([5000, 2, 9]);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test('a bad value names the variable, the option and what is accepted', () => {
    const error = configError(() => load({ GPU_SLOTS: '0' }));
    expect(error.variable).toBe('GPU_SLOTS');
    expect(error.accepted).toBe('an integer 1..64');
    expect(error.message).toBe('Invalid configuration: option `gpuSlots` / environment variable GPU_SLOTS has the value "0", which is not accepted; accepted: an integer 1..64.');
    expect(configError(() => load({ LOG_LEVEL: 'loud' })).variable).toBe('LOG_LEVEL');
    expect(configError(() => load({ PORT: '3.5' })).variable).toBe('PORT');
    expect(configError(() => load({ JOB_RETENTION_DAYS: 'forever' })).variable).toBe('JOB_RETENTION_DAYS');
  });

  test('configured secrets are registered for redaction', () => {
    const config = load({ DISCORD_TOKEN: 'discord-token-for-tests', DISCORD_MODE: 'gateway' });
    expect(config.discordToken).toBe('discord-token-for-tests');
    expect(redactSecrets('token=discord-token-for-tests')).toBe('token=[redacted]');
  });

  test('platform modes require their companion settings', () => {
    expect(configError(() => load({ DISCORD_TOKEN: 'a-discord-token', DISCORD_MODE: 'http' })).variable).toBe('DISCORD_PUBLIC_KEY');
    expect(configError(() => load({ SLACK_BOT_TOKEN: 'xoxb-test-token-1', SLACK_MODE: 'socket' })).variable).toBe('SLACK_APP_TOKEN');
    expect(configError(() => load({ SLACK_BOT_TOKEN: 'xoxb-test-token-1' })).variable).toBe('SLACK_SIGNING_SECRET');
    expect(load({ SLACK_BOT_TOKEN: 'xoxb-test-token-1', SLACK_SIGNING_SECRET: 'signing-secret-1' }).slackMode).toBe('http');
  });

  test('an unknown execution provider is named', () => {
    const error = configError(() => load({ IMAGINE_EXECUTION_PROVIDERS: 'cpu,tpu' }));
    expect(error.message).toContain('names the unknown provider "tpu"');
  });

  test('the settings table lists every variable once', () => {
    const table = settingsTable();
    for (const entry of Object.values(settings)) expect(table.split(`\`${entry.variable}\``).length - 1).toBe(1);
    expect(table).toContain('| `GPU_SLOTS` | `1` |');
    expect(table).toContain('models/imagine-shapes');
  });
});
