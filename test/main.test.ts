import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ConfigError, ModelError } from '../src/errors.js';
import { start, startupFailureText } from '../src/main.js';
import { silentLogger } from '../src/logger.js';
import { FakeEngine } from './fakes/fake-engine.js';

const quiet = { storeUrl: 'memory://', logLevel: 'silent' as const, port: 0, host: '127.0.0.1' };

describe('start-up', () => {
  test('with no platform configured it serves the playground, /healthz and /metrics', async () => {
    const engine = new FakeEngine();
    const app = await start({ config: quiet, env: {}, dotenvPath: false, logger: silentLogger(), createEngine: async () => engine });
    try {
      expect(app.adapters).toEqual(['playground']);
      const health = await fetch(`${app.url}/healthz`);
      expect(health.status).toBe(200);
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toContain('imagine_queue_depth 0');
      const page = await fetch(`${app.url}/`);
      expect(page.status).toBe(200);
    } finally {
      await app.stop();
    }
    expect(engine.closed).toBe(true);
    expect(app.service.ready()).toBe(false);
  });

  test('PLAYGROUND=off keeps /healthz but not the page', async () => {
    const app = await start({ config: { ...quiet, playground: 'off' }, env: {}, dotenvPath: false, logger: silentLogger(), createEngine: async () => new FakeEngine() });
    try {
      expect(app.adapters).toEqual([]);
      expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${app.url}/`)).status).toBe(404);
    } finally {
      await app.stop();
    }
  });

  test('an engine that cannot load stops start-up with its error and frees the port', async () => {
    const failure = new ModelError('models/x/manifest.json', 'an imagine-unclip manifest', 'file not found');
    await expect(start({ config: quiet, env: {}, dotenvPath: false, logger: silentLogger(), createEngine: async () => Promise.reject(failure) })).rejects.toBe(failure);
    expect(startupFailureText(failure)).toBe('Imagine could not start: models/x/manifest.json: file not found (expected an imagine-unclip manifest)');
  });

  test('a configuration error names the variable, without a stack', async () => {
    const error = await start({ env: { GPU_SLOTS: 'many' }, dotenvPath: false, logger: silentLogger() }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    const text = startupFailureText(error);
    expect(text).toContain('GPU_SLOTS');
    expect(text).not.toMatch(/\n\s+at /);
  });

  test('npm start with a bad setting prints one clear line and exits 1', () => {
    const root = path.resolve(import.meta.dirname, '..');
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH, GPU_SLOTS: 'many', DISCORD_TOKEN: '' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe('Invalid configuration: option `gpuSlots` / environment variable GPU_SLOTS has the value "many", which is not accepted; accepted: an integer 1..64.');
  });
});
