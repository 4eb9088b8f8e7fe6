/** Paths of the tiny ONNX fixtures (built by test/fixtures/models/build.py) and helpers for throwaway copies. */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const modelsFolder = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'models');

/** A fixture folder by name (unclip, unclip-plain, sd, sd-float-timestep, broken/...). */
export function fixture(name: string): string {
  return path.join(modelsFolder, name);
}

/** A writable copy of the whole fixtures tree (so that relative paths between fixtures keep working). */
export function copyFixtures(): { root: string; folder: (name: string) => string; remove: () => void } {
  const root = mkdtempSync(path.join(tmpdir(), 'imagine-models-'));
  cpSync(modelsFolder, path.join(root, 'models'), { recursive: true });
  return { root, folder: (name) => path.join(root, 'models', name), remove: () => rmSync(root, { recursive: true, force: true }) };
}
