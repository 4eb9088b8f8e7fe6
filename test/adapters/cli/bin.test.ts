import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../../src/config/config.js';
import { decodeImage } from '../../../src/image/encode.js';
import { defaultGutter } from '../../../src/image/grid.js';

const run = promisify(execFile);
const bin = path.join(projectRoot, 'bin', 'imagine.js');
const fixture = path.join(projectRoot, 'test', 'fixtures', 'models', 'unclip');

async function imagine(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd, env: { ...process.env, NODE_OPTIONS: '', IMAGINE_MODEL: '' }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failure.code === 'number' ? failure.code : -1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

describe('bin/imagine.js (a child process)', () => {
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'imagine-bin-'));
  });
  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  test('renders a grid and tiles with the tiny unCLIP fixture, from another folder', async () => {
    expect(existsSync(path.join(fixture, 'manifest.json'))).toBe(true);
    const result = await imagine(['a red circle', '--seed', '7', '--model', fixture, '--out', 'grid.png', '--tiles', 'tiles'], folder);
    expect(result.stderr).not.toContain('imagine:');
    expect(result.code).toBe(0);
    const tiles = await Promise.all([1, 2, 3, 4].map(async (index) => decodeImage(await readFile(path.join(folder, 'tiles', `${index}.png`)))));
    const { width, height } = tiles[0]!;
    for (const tile of tiles) expect([tile.width, tile.height]).toEqual([width, height]);
    const gutter = defaultGutter(width, height);
    const grid = await decodeImage(await readFile(path.join(folder, 'grid.png')));
    expect([grid.width, grid.height]).toEqual([2 * width + 3 * gutter, 2 * height + 3 * gutter]);
    // Four seeds, four different images.
    const first = tiles[0]!.data;
    expect(tiles.slice(1).some((tile) => Buffer.compare(Buffer.from(tile.data), Buffer.from(first)) !== 0)).toBe(true);
    expect(result.stdout).toContain('--seed 7');
  });

  test('a bad model folder is a clear one-line error with exit code 1 or 2, no stack', async () => {
    const result = await imagine(['x', '--model', path.join(folder, 'nothing-here')], folder);
    expect([1, 2]).toContain(result.code);
    expect(result.stderr).toContain('imagine:');
    expect(result.stderr).toContain('nothing-here');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  test('a prompt mistake exits with 2', async () => {
    const result = await imagine(['x', '--chaos', '500'], folder);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('0 to 100');
  });
});
