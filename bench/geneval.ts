/**
 * The model evaluation (training/evaluate.py's GenEval-style benchmark) on images drawn by the
 * TypeScript engine itself, at the manifest's defaults, rather than by the PyTorch checkpoints:
 * every held-out prompt is drawn as a whole grid (four images, each judged), and the first image
 * of each grid is varied (V, subtle) once, to see whether the variation keeps what the checker
 * judged in its source.
 *
 *   npm run bench -- geneval [--model models/imagine-shapes] [--n 24] [--seed 0] [--keep DIR]
 *
 * Needs /usr/bin/python3 with the training recipe's packages (numpy, Pillow) for the prompts and
 * the pixel checker. Prints the checker's JSON figures (per category, overall, variations).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { projectRoot, shippedModel } from '../src/config/config.js';
import type { EngineImage } from '../src/engine/engine.js';
import { UnclipEngine } from '../src/engine/unclip/unclip-engine.js';
import { option, round } from './run.js';

interface HeldOutPrompt {
  id: string;
  category: string;
  prompt: string;
  spec: unknown;
  file?: string;
}

const python = process.env.PYTHON ?? '/usr/bin/python3';

function evaluatePy(args: string[]): string {
  const result = spawnSync(python, ['-m', 'training.evaluate', ...args], { cwd: projectRoot, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`training.evaluate ${args.join(' ')} failed: ${result.stderr || result.error?.message}`);
  return result.stdout;
}

async function savePng(image: EngineImage, file: string): Promise<void> {
  const { data, width, height } = image.image;
  await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } }).png().toFile(file);
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const model = option(args, 'model') ?? shippedModel;
  const perCategory = Number(option(args, 'n') ?? 24);
  const seed = Number(option(args, 'seed') ?? 0);
  const keep = option(args, 'keep');
  const folder = keep ? path.resolve(keep) : mkdtempSync(path.join(os.tmpdir(), 'imagine-geneval-'));
  mkdirSync(folder, { recursive: true });
  const engine = await UnclipEngine.load(model);
  try {
    const promptsFile = path.join(folder, 'held-out.json');
    evaluatePy(['--n', String(perCategory), '--write-prompts', promptsFile]);
    const prompts = JSON.parse(readFileSync(promptsFile, 'utf8')) as HeldOutPrompt[];
    const { width, height } = engine.capabilities.sizes['1:1']!;
    const judged: HeldOutPrompt[] = [];
    const started = performance.now();
    for (const [index, entry] of prompts.entries()) {
      const base = seed * 100_000 + index * 8;
      const grid = await engine.generate({ prompt: entry.prompt, width, height, seeds: [base, base + 1, base + 2, base + 3] });
      for (const [tile, image] of grid.images.entries()) {
        const file = `${entry.id}_${tile}.png`;
        await savePng(image, path.join(folder, file));
        judged.push({ ...entry, id: `${entry.id}_${tile}`, file });
      }
      const varied = await engine.vary({ source: grid.images[0]!, prompt: entry.prompt, strength: 'subtle', seeds: [base + 4] });
      await savePng(varied.images[0]!, path.join(folder, `${entry.id}_0_V.png`));
      if ((index + 1) % 24 === 0) process.stderr.write(`${index + 1}/${prompts.length} prompts\n`);
    }
    const seconds = (performance.now() - started) / 1000;
    writeFileSync(path.join(folder, 'prompts.json'), JSON.stringify(judged));
    const figures = JSON.parse(evaluatePy(['--images', folder])) as Record<string, unknown>;
    return { model: path.relative(projectRoot, model) || model, prompts: prompts.length, images: judged.length, seconds: round(seconds, 1), ...figures, ...(keep ? { kept: folder } : {}) };
  } finally {
    await engine.close();
    if (!keep) rmSync(folder, { recursive: true, force: true });
  }
}
