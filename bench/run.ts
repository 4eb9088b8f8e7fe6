/**
 * `npm run bench -- <name> [args...]` runs bench/<name>.ts's exported `run(args)`. A benchmark
 * prints what it likes while it runs; the figures it returns are printed as one JSON object on the
 * last line, so that scripts can read them with `tail -n 1`.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** What every benchmark module exports. */
export interface Benchmark {
  run(args: string[]): Promise<Record<string, unknown> | void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** The benchmarks in this folder. */
export function benchmarkNames(): string[] {
  return readdirSync(here)
    .filter((file) => file.endsWith('.ts') && file !== 'run.ts' && !file.endsWith('.d.ts'))
    .map((file) => file.replace(/\.ts$/, ''))
    .sort();
}

/** Reads `--name value` (or `--name=value`) from the arguments. */
export function option(args: string[], name: string): string | undefined {
  const index = args.findIndex((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));
  if (index < 0) return undefined;
  const arg = args[index]!;
  return arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : args[index + 1];
}

/** The p-th percentile (0..100) of some numbers, by the nearest-rank method. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

/** Rounds for printing. */
export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const names = benchmarkNames();
  if (!name || !names.includes(name)) {
    process.stderr.write(`Usage: npm run bench -- <name> [options]\nBenchmarks: ${names.join(', ')}\n`);
    process.exitCode = name ? 1 : 0;
    return;
  }
  const module = (await import(pathToFileURL(path.join(here, `${name}.ts`)).href)) as Partial<Benchmark>;
  if (typeof module.run !== 'function') {
    process.stderr.write(`bench/${name}.ts exports no run() function.\n`);
    process.exitCode = 1;
    return;
  }
  const figures = await module.run(args);
  if (figures) process.stdout.write(`${JSON.stringify(figures)}\n`);
}

const invoked = process.argv[1];
if (invoked && import.meta.url === pathToFileURL(path.resolve(invoked)).href) {
  main().then(
    // Engines may hold worker threads or timers; a finished benchmark should not hang.
    () => setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref(),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
