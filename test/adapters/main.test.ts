import { createServer, type AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ConfigError, ModelError } from '../../src/errors.js';
import { start } from '../../adapters/main.js';
import { startupFailureText } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { FakeEngine } from '../fakes/fake-engine.js';
import { FakeDiscord } from '../fakes/fake-discord/fake-discord.js';
import { FakeSlack } from '../fakes/fake-slack/fake-slack.js';
import { createGenerationService } from '../../src/service/generation-service.js';
import type { OrphanDelivery } from '../../src/service/types.js';
import { MemoryFirstSightings } from '../../src/service/first-sightings.js';

/** A port nothing listens on now (the endpoint's URL is not exposed by start()). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

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

  test('with Discord and Slack configured, every adapter registers its orphan delivery with the service, and Discord remembers signatures where the service shares them', async () => {
    const discord = await FakeDiscord.start();
    const slack = await FakeSlack.start();
    const discordPort = await freePort();
    const registered: OrphanDelivery[] = [];
    const scopes: string[] = [];
    const shared = new MemoryFirstSightings();
    // The in-process service has no orphans to deliver and nothing to share; this one records what start-up
    // hands a redis service.
    const createService: NonNullable<Parameters<typeof start>[0]>['createService'] = async (options) =>
      Object.assign(await createGenerationService(options), {
        registerOrphanDelivery: (delivery: OrphanDelivery) => void registered.push(delivery),
        sightings: (scope: string) => {
          scopes.push(scope);
          return shared;
        },
      });
    const config = {
      ...quiet,
      discordToken: discord.token,
      discordApplicationId: discord.applicationId,
      discordPublicKey: discord.publicKey,
      discordMode: 'http' as const,
      discordHttpPort: discordPort,
      discordApiUrl: discord.apiUrl,
      slackBotToken: slack.botToken,
      slackSigningSecret: 'test-signing-secret-1234',
      slackMode: 'http' as const,
      slackPort: 0,
      slackApiUrl: slack.apiUrl,
    };
    try {
      const app = await start({ config, env: {}, dotenvPath: false, logger: silentLogger(), createEngine: async () => new FakeEngine(), createService });
      try {
        expect(app.adapters).toEqual(['discord', 'slack']);
        expect(registered.map((delivery) => delivery.platform).sort()).toEqual(['discord', 'playground', 'slack']);
        for (const delivery of registered) expect(typeof delivery.listenerFor).toBe('function');
        expect(scopes).toEqual(['discord-replay']);
        expect(shared.size).toBe(0);
        const url = `http://127.0.0.1:${discordPort}/interactions`;
        expect((await discord.postInteraction(url, discord.ping(), 'valid')).status).toBe(200);
        expect(shared.size).toBe(1);
      } finally {
        await app.stop();
      }
    } finally {
      await Promise.all([discord.close(), slack.close()]);
    }
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
    const root = path.resolve(import.meta.dirname, '..', '..');
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'adapters/main.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH, GPU_SLOTS: 'many', DISCORD_TOKEN: '' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe('Invalid configuration: option `gpuSlots` / environment variable GPU_SLOTS has the value "many", which is not accepted; accepted: an integer 1..64.');
  });
});

describe('the process', () => {
  test('npm start serves /healthz with the real engine and exits 0 on SIGTERM', async () => {
    const { spawn } = await import('node:child_process');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const os = await import('node:os');
    const root = path.resolve(import.meta.dirname, '..', '..');
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'imagine-main-'));
    const child = spawn(process.execPath, ['--import', 'tsx', 'adapters/main.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH, PORT: '0', DATA_DIR: dataDir, IMAGINE_MODEL: path.join(root, 'test/fixtures/models/unclip'), LOG_LEVEL: 'info', IMAGINE_THREADS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let output = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          const match = /"url":"(http:\/\/[^"]+)"[^\n]*Imagine is ready/.exec(output);
          if (match) resolve(match[1]!);
        });
        child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.once('exit', (code) => reject(new Error(`exited with ${code} before it was ready:\n${output}`)));
      });
      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(200);
      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
    } finally {
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
