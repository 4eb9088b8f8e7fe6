import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli, exitCodes, type CliOptions, type TextSink } from '../../../adapters/cli/main.js';
import { decodeImage } from '../../../src/image/encode.js';
import { gridLayout, defaultGutter } from '../../../src/image/grid.js';
import { deriveSeed } from '../../../src/engine/random.js';
import { FakeEngine, colourForSeed, meanColour } from '../../fakes/fake-engine.js';

class Collector implements TextSink {
  text = '';
  constructor(readonly isTTY = false) {}
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

let folder: string;
beforeEach(async () => {
  folder = await mkdtemp(path.join(tmpdir(), 'imagine-cli-'));
});
afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

function harness(extra: Partial<CliOptions> = {}, tty = false): { options: CliOptions; stdout: Collector; stderr: Collector; engines: FakeEngine[]; configs: unknown[] } {
  const stdout = new Collector();
  const stderr = new Collector(tty);
  const engines: FakeEngine[] = [];
  const configs: unknown[] = [];
  const options: CliOptions = {
    stdout,
    stderr,
    cwd: folder,
    env: {},
    engineFactory: async (config) => {
      configs.push(config);
      const engine = new FakeEngine({ steps: 5 });
      engines.push(engine);
      return engine;
    },
    ...extra,
  };
  return { options, stdout, stderr, engines, configs };
}

const closeTo = (actual: number[], expected: number[]): void => {
  actual.forEach((value, index) => expect(Math.abs(value - expected[index]!)).toBeLessThanOrEqual(2));
};

describe('imagine CLI', () => {
  test('renders a grid and tiles with the parsed flags (prompt and flags as separate argv items)', async () => {
    const { options, stdout, stderr, engines } = harness();
    const code = await runCli(['a red circle on a blue background', '--ar', '16:9', '--seed', '42', '--no', 'text', '--out', 'out/grid.png', '--tiles', 'tiles'], options);
    expect(stderr.text).not.toContain('imagine:');
    expect(code).toBe(exitCodes.ok);
    const engine = engines[0]!;
    expect(engine.closed).toBe(true);
    const seeds = [0, 1, 2, 3].map((index) => deriveSeed(42, index));
    expect(engine.calls[0]).toMatchObject({ method: 'generate', prompt: 'a red circle on a blue background', seeds, width: engine.capabilities.sizes['16:9']!.width, height: engine.capabilities.sizes['16:9']!.height });

    const grid = await decodeImage(await readFile(path.join(folder, 'out', 'grid.png')));
    const { width, height } = engine.capabilities.sizes['16:9']!;
    const layout = gridLayout(width, height, defaultGutter(width, height));
    expect([grid.width, grid.height]).toEqual([layout.width, layout.height]);
    layout.cells.forEach((cell, index) => closeTo(meanColour(grid, { left: cell.left, top: cell.top, width, height }), colourForSeed(seeds[index]!)));

    for (let index = 0; index < 4; index += 1) {
      const tile = await decodeImage(await readFile(path.join(folder, 'tiles', `${index + 1}.png`)));
      expect([tile.width, tile.height]).toEqual([width, height]);
      closeTo(meanColour(tile), colourForSeed(seeds[index]!));
    }
    expect(stdout.text).toContain('grid.png');
    expect(stdout.text).toContain('--ar 16:9 --seed 42 --no text');
    // Not a terminal: plain progress lines, no carriage returns.
    expect(stderr.text).toContain('Generating… 100%');
    expect(stderr.text).not.toContain('\r');
  });

  test('the whole prompt as one argument works too, and a random seed names the default output', async () => {
    const { options, stdout } = harness();
    expect(await runCli(['a blue square —ar 3:2'], options)).toBe(exitCodes.ok);
    const match = /imagine-(\d+)\.png/.exec(stdout.text);
    expect(match).not.toBeNull();
    expect((await stat(path.join(folder, match![0]))).size).toBeGreaterThan(0);
  });

  test('a terminal gets carriage-return progress updates', async () => {
    const { options, stderr } = harness({}, true);
    expect(await runCli(['dots', '--seed', '1', '--out', 'g.webp'], options)).toBe(exitCodes.ok);
    expect(stderr.text).toContain('\r');
    expect(stderr.text).toContain('100%');
    const file = await readFile(path.join(folder, 'g.webp'));
    expect(file.subarray(8, 12).toString('latin1')).toBe('WEBP');
  });

  test('--model overrides IMAGINE_MODEL', async () => {
    const { options, configs } = harness({ env: { IMAGINE_MODEL: '/elsewhere' } });
    await runCli(['x', '--model', 'my-model', '--out', 'a.png'], options);
    expect((configs[0] as { model: string }).model).toBe(path.join(folder, 'my-model'));
  });

  test('prompt mistakes exit with 2 and a clear message, before the engine loads, without a stack', async () => {
    for (const [argv, expected] of [
      [['x', '--sed', '4'], 'Did you mean `--seed`'],
      [['--ar', '16:9'], 'prompt is empty'],
      [['x', '--seed', '-3'], '0 to 4294967295'],
      [['x', '--seed', '1', '--seed', '2'], 'given twice'],
      [['x', '--out'], '`--out` needs a value'],
      [['x', '--chaos'], 'needs a value'],
    ] as Array<[string[], string]>) {
      const { options, stderr, engines } = harness();
      expect(await runCli(argv, options)).toBe(exitCodes.usage);
      expect(stderr.text).toContain(expected);
      expect(stderr.text).not.toMatch(/\n\s+at /);
      expect(engines).toHaveLength(0);
    }
  });

  test('an aspect ratio the engine lacks is refused after it loads', async () => {
    const { options, stderr, engines } = harness();
    expect(await runCli(['x', '--ar', '21:9'], options)).toBe(exitCodes.usage);
    expect(stderr.text).toContain('16:9');
    expect(engines[0]!.closed).toBe(true);
  });

  test('configuration errors name the variable', async () => {
    const { options, stderr } = harness({ env: { IMAGINE_THREADS: 'lots' } });
    expect(await runCli(['x'], options)).toBe(exitCodes.usage);
    expect(stderr.text).toContain('IMAGINE_THREADS');
  });

  test('engine failures exit with 1; stacks only with LOG_LEVEL=debug', async () => {
    const failing = async (): Promise<FakeEngine> => new FakeEngine({ failPrompts: ['doom'] });
    const quiet = harness({ engineFactory: failing });
    expect(await runCli(['doom'], quiet.options)).toBe(exitCodes.failed);
    expect(quiet.stderr.text).toContain('engine_failed');
    expect(quiet.stderr.text).not.toMatch(/\n\s+at /);
    const loud = harness({ engineFactory: failing, env: { LOG_LEVEL: 'debug' } });
    expect(await runCli(['doom'], loud.options)).toBe(exitCodes.failed);
    expect(loud.stderr.text).toMatch(/\n\s+at /);
  });

  test('an interrupted render exits with 130', async () => {
    const controller = new AbortController();
    const engine = new FakeEngine({ hold: true });
    const { options, stderr } = harness({ engineFactory: async () => engine, signal: controller.signal });
    const running = runCli(['x'], options);
    await engine.waitForCalls(1);
    controller.abort();
    expect(await running).toBe(exitCodes.interrupted);
    expect(stderr.text).toContain('Interrupted');
  });

  test('--help prints usage and flags', async () => {
    const { options, stdout } = harness();
    expect(await runCli(['--help'], options)).toBe(exitCodes.ok);
    for (const part of ['--out', '--tiles', '--model', 'tokenize', '--ar', '--chaos', '--cfg']) expect(stdout.text).toContain(part);
  });

  test('tokenize prints the ids with start and end tokens as JSON', async () => {
    const { options, stdout } = harness();
    expect(await runCli(['tokenize', 'a red circle'], options)).toBe(exitCodes.ok);
    const ids = JSON.parse(stdout.text) as number[];
    expect(ids[0]).toBe(49406);
    expect(ids.at(-1)).toBe(49407);
    expect(ids).toHaveLength(5);
  });
});
