/**
 * The command line: `imagine "<prompt>" [flags] --out grid.png [--tiles DIR] [--model DIR]` renders
 * a 2×2 grid with the configured engine; `imagine tokenize "<text>"` prints CLIP token ids;
 * `imagine --help`. The prompt's flags are the chat command's (commands/parse-prompt.ts).
 * Everything is injectable through {@link runCli} so tests run it in-process with a fake engine.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { ImageEngine } from '../../src/engine/engine.js';
import { deriveSeed } from '../../src/engine/random.js';
import { ConfigError, ImagineError, ModelError, UserError, isAbortError, redactSecrets } from '../../src/errors.js';
import { composeGrid } from '../../src/image/grid.js';
import { encodeImage } from '../../src/image/encode.js';
import { helpText, parametersText, progressBar, truncationNotice } from '../../commands/messages.js';
import { parseImaginePrompt, promptContextFor, randomSeed } from '../../commands/parse-prompt.js';

/** A place the CLI writes text to (process.stdout / process.stderr, or a test's collector). */
export interface TextSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** Makes the engine; `createEngine` from src/engine/factory.ts by default. */
export type EngineFactory = (config: Config) => Promise<ImageEngine>;

export interface CliOptions {
  engineFactory?: EngineFactory;
  stdout?: TextSink;
  stderr?: TextSink;
  /** Environment for the configuration; process.env by default. */
  env?: NodeJS.ProcessEnv;
  /** Folder that relative paths are resolved against; process.cwd() by default. */
  cwd?: string;
  /** Stops a render between steps. */
  signal?: AbortSignal;
  /** Tokenizer for `imagine tokenize`; tokenizeForCli by default. */
  tokenize?: (text: string) => Promise<number[]>;
}

/** Exit codes. */
export const exitCodes = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** The CLI's own options (everything else belongs to the prompt). */
interface CliArguments {
  help: boolean;
  out?: string;
  tiles?: string;
  model?: string;
  promptParts: string[];
}

const usage = `Usage:
  imagine "<prompt>" [--ar W:H] [--seed N] [--no words] [--chaos 0..100] [--steps N] [--guidance X]
          [--out grid.png] [--tiles DIR] [--model DIR]
  imagine tokenize "<text>"
  imagine --help

Renders a 2×2 grid of four images with the configured engine (IMAGINE_MODEL, the shipped
imagine-shapes model by default) and writes it to --out (imagine-<seed>.png by default; .webp
writes WebP). --tiles DIR also writes the four images as DIR/1.png..4.png. --model DIR overrides
IMAGINE_MODEL. tokenize prints CLIP token ids (start and end tokens, no padding) as JSON.
Exit codes: 0 done, 1 the engine failed, 2 bad arguments, configuration or model folder.`;

/** The help text of the CLI: usage plus the prompt flags. */
export function cliHelpText(): string {
  const flags = helpText({ format: 'plain' }).split('\n');
  const start = flags.findIndex((line) => line.startsWith('Flags'));
  const end = flags.findIndex((line, index) => index > start && line === '');
  return `${usage}\n\n${flags.slice(start, end === -1 ? undefined : end).join('\n')}\n`;
}

function parseArguments(argv: readonly string[]): CliArguments {
  const result: CliArguments = { help: false, promptParts: [] };
  const own = new Set(['out', 'tiles', 'model']);
  for (let index = 0; index < argv.length; index += 1) {
    const item = argv[index]!;
    if (item === '--help' || item === '-h') {
      result.help = true;
      continue;
    }
    const match = /^--(out|tiles|model)(?:=(.*))?$/s.exec(item);
    if (match && own.has(match[1]!)) {
      const name = match[1] as 'out' | 'tiles' | 'model';
      let value = match[2];
      if (value === undefined) {
        value = argv[index + 1];
        if (value === undefined || value.startsWith('--')) throw new UserError('flag_invalid', `\`--${name}\` needs a value, for example \`--${name} ${name === 'out' ? 'grid.png' : name === 'tiles' ? 'tiles/' : 'models/my-model'}\`.`, { field: name });
        index += 1;
      }
      if (value.trim() === '') throw new UserError('flag_invalid', `\`--${name}\` needs a value.`, { field: name });
      if (result[name] !== undefined) throw new UserError('flag_repeated', `\`--${name}\` is given twice; keep only one.`, { field: name });
      result[name] = value;
      continue;
    }
    result.promptParts.push(item);
  }
  return result;
}

/**
 * The configured engine, loaded on this thread: a one-shot render gains nothing from a worker (no
 * acknowledgements to keep fast), and Ctrl-C then stops the process at once.
 */
async function defaultEngineFactory(config: Config): Promise<ImageEngine> {
  // Imported here so that --help, tokenize and argument errors never load onnxruntime.
  const { createEngine } = await import('../../src/engine/factory.js');
  return createEngine(config, { inWorker: false });
}

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. Never throws. */
export async function runCli(argv: readonly string[], options: CliOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  try {
    if (argv[0] === 'tokenize') {
      const text = argv.slice(1).join(' ');
      const tokenize = options.tokenize ?? (async (input: string) => (await import('../../src/engine/tokenizer/clip-tokenizer.js')).tokenizeForCli(input));
      stdout.write(`${JSON.stringify(await tokenize(text))}\n`);
      return exitCodes.ok;
    }
    const args = parseArguments(argv);
    if (args.help || argv.length === 0) {
      (args.help ? stdout : stderr).write(cliHelpText());
      return args.help ? exitCodes.ok : exitCodes.usage;
    }
    const config = loadConfig(args.model ? { model: path.resolve(cwd, args.model) } : {}, env, path.join(cwd, '.env'));
    const seed = randomSeed();
    const prompt = args.promptParts.join(' ');
    try {
      // Catch mistakes before the (slow) model load; what depends on the engine is checked after it.
      parseImaginePrompt(prompt, { blockedWords: config.blockedWords, randomSeed: () => seed, limits: { minSteps: 1, maxSteps: 100_000, minGuidance: -1e6, maxGuidance: 1e6 } });
    } catch (error) {
      if (!(error instanceof UserError && error.field === 'ar')) throw error;
    }
    const engine = await (options.engineFactory ?? defaultEngineFactory)(config);
    try {
      return await render(engine, config, prompt, seed, args, { stdout, stderr, cwd, signal: options.signal });
    } finally {
      await engine.close().catch(() => undefined);
    }
  } catch (error) {
    return reportError(error, stderr, env);
  }
}

async function render(engine: ImageEngine, config: Config, prompt: string, seed: number, args: CliArguments, io: { stdout: TextSink; stderr: TextSink; cwd: string; signal: AbortSignal | undefined }): Promise<number> {
  const capabilities = engine.capabilities;
  const parameters = parseImaginePrompt(prompt, promptContextFor(capabilities, { blockedWords: config.blockedWords, randomSeed: () => seed }));
  const size = capabilities.sizes[parameters.aspectRatio];
  if (!size) throw new UserError('flag_invalid', `The engine has no size for ${parameters.aspectRatio}.`, { field: 'ar' });
  const seeds = [0, 1, 2, 3].map((index) => deriveSeed(parameters.seed, index));
  const progress = progressReporter(io.stderr);
  io.stderr.write(`Drawing "${parameters.prompt}" ${parametersText(parameters)} with ${capabilities.name}\n`);
  const result = await engine.generate({
    prompt: parameters.prompt,
    ...(parameters.negativePrompt !== undefined ? { negativePrompt: parameters.negativePrompt } : {}),
    width: size.width,
    height: size.height,
    seeds,
    ...(parameters.steps !== undefined ? { steps: parameters.steps } : {}),
    ...(parameters.guidance !== undefined ? { guidance: parameters.guidance } : {}),
    chaos: parameters.chaos,
    ...(io.signal ? { signal: io.signal } : {}),
    onProgress: (update) => progress.update(update.fraction, update.stage),
  });
  progress.done();
  if (result.promptTruncated) io.stderr.write(`${truncationNotice}\n`);
  const images = result.images.map((item) => item.image);
  if (images.length !== 4) throw new ImagineError('engine_failed', `The engine returned ${images.length} images instead of 4.`);

  const out = path.resolve(io.cwd, args.out ?? `imagine-${parameters.seed}.png`);
  const format = path.extname(out).toLowerCase() === '.webp' ? 'webp' : 'png';
  const grid = await composeGrid(images, { format });
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, grid.data);
  io.stdout.write(`${out} (${grid.width}×${grid.height}) "${parameters.prompt}" ${parametersText(parameters)}\n`);
  if (args.tiles) {
    const folder = path.resolve(io.cwd, args.tiles);
    await mkdir(folder, { recursive: true });
    for (const [index, image] of images.entries()) {
      const file = path.join(folder, `${index + 1}.png`);
      await writeFile(file, await encodeImage(image, 'png'));
      io.stdout.write(`${file} (${image.width}×${image.height}) seed ${seeds[index]}\n`);
    }
  }
  return exitCodes.ok;
}

/** Carriage-return updates on a terminal; a plain line per tenth (and per stage) otherwise. */
function progressReporter(stderr: TextSink): { update(fraction: number, stage: string): void; done(): void } {
  const tty = stderr.isTTY === true;
  let lastTenth = -1;
  let lastStage = '';
  let drawn = false;
  return {
    update(fraction, stage) {
      const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
      const percent = Math.floor(clamped * 100);
      if (tty) {
        stderr.write(`\r${progressBar(clamped, 20)} ${String(percent).padStart(3)}% ${stage.padEnd(14).slice(0, 14)}`);
        drawn = true;
        return;
      }
      const tenth = Math.floor(clamped * 10);
      if (tenth !== lastTenth || stage !== lastStage) {
        stderr.write(`Generating… ${percent}% (${stage})\n`);
        lastTenth = tenth;
        lastStage = stage;
      }
    },
    done() {
      if (tty && drawn) stderr.write('\n');
    },
  };
}

function reportError(error: unknown, stderr: TextSink, env: NodeJS.ProcessEnv): number {
  const debug = (env.LOG_LEVEL ?? '').toLowerCase() === 'debug' || (env.LOG_LEVEL ?? '').toLowerCase() === 'trace';
  if (isAbortError(error)) {
    stderr.write('Interrupted.\n');
    return exitCodes.interrupted;
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof ImagineError && !(error instanceof UserError) ? ` (${error.code})` : '';
  stderr.write(`imagine: ${redactSecrets(message)}${code}\n`);
  if (debug && error instanceof Error && error.stack) stderr.write(`${redactSecrets(error.stack)}\n`);
  else if (!(error instanceof ImagineError)) stderr.write('Set LOG_LEVEL=debug to see the stack trace.\n');
  return error instanceof UserError || error instanceof ConfigError || error instanceof ModelError ? exitCodes.usage : exitCodes.failed;
}

/** Runs the CLI for this process: argv, stdio, exit code. Ctrl-C keeps its default (stop at once). */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  process.exitCode = await runCli(argv);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await main();
}
