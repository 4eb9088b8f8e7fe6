/**
 * docker-compose.yml cannot be run here (no container engine or registry), so it is checked
 * against the repository instead: its commands are the package scripts, every variable it sets
 * is a real setting, both processes share one Redis queue, and Redis is configured for BullMQ.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { settings } from '../../../src/config/config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const compose = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
const scripts = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

/** The text of one top-level service block. */
function service(name: string): string {
  const match = new RegExp(`^  ${name}:\\n((?:    .*\\n|\\s*\\n)+)`, 'm').exec(compose);
  if (!match) throw new Error(`docker-compose.yml has no service ${name}`);
  return match[1]!;
}

const commandOf = (block: string): string => {
  const match = /command: \[(.*)\]/.exec(block);
  return match ? match[1]!.split(',').map((part) => part.trim().replace(/^"|"$/g, '')).join(' ') : '';
};

describe('docker-compose.yml', () => {
  test('has Redis, a bot and GPU workers', () => {
    expect(compose).toMatch(/^services:$/m);
    for (const name of ['redis', 'bot', 'worker']) expect(() => service(name)).not.toThrow();
    expect(service('worker')).toMatch(/replicas: 2/);
  });

  test('runs the package scripts: npm start for the bot, npm run worker for the workers', () => {
    expect(commandOf(service('bot'))).toBe(scripts.start);
    expect(commandOf(service('worker'))).toBe(scripts.worker);
  });

  test('bot and workers share one Redis queue', () => {
    expect(compose).toMatch(/x-imagine-environment: &imagine-environment\n {2}QUEUE: redis\n {2}REDIS_URL: redis:\/\/redis:6379\n/);
    expect(service('bot')).toContain('<<: *imagine-environment');
    expect(service('worker')).toContain('<<: *imagine-environment');
  });

  test('every variable it sets is a setting of src/config/config.ts', () => {
    const known = new Set(Object.values(settings).map((entry) => entry.variable));
    const environmentLines = compose.split('\n').filter((line) => /^\s{2,}#?\s*[A-Z][A-Z0-9_]+:/.test(line));
    const variables = environmentLines.map((line) => /([A-Z][A-Z0-9_]+):/.exec(line)![1]!);
    expect(variables.length).toBeGreaterThan(10);
    expect(variables.filter((variable) => !known.has(variable))).toEqual([]);
  });

  test('Redis keeps its data and never evicts keys (BullMQ needs noeviction)', () => {
    expect(service('redis')).toMatch(/--appendonly", "yes"/);
    expect(service('redis')).toMatch(/--maxmemory-policy", "noeviction"/);
  });

  test('containers get longer to stop than the shutdown grace period', () => {
    const grace = Number(/SHUTDOWN_GRACE_SECONDS: \$\{SHUTDOWN_GRACE_SECONDS:-(\d+)\}/.exec(compose)?.[1]);
    expect(grace).toBe(settings.shutdownGraceSeconds.fallback);
    for (const name of ['bot', 'worker']) {
      const period = Number(/stop_grace_period: (\d+)s/.exec(service(name))?.[1]);
      expect(period).toBeGreaterThan(grace);
    }
  });
});
