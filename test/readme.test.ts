import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { projectRoot, settingsTable } from '../src/config/config.js';
import { withCurrentSettings } from '../src/config/print-settings.js';
import { commandDefinitions } from '../commands/definitions.js';
import { flagDefinitions } from '../commands/parse-prompt.js';

const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');

describe('README', () => {
  test('contains the current configuration table (regenerate with src/config/print-settings.ts --write README.md)', () => {
    expect(readme).toContain(settingsTable());
    expect(withCurrentSettings(readme)).toBe(readme);
  });

  test('documents the two set-up commands, every command and every flag', () => {
    expect(readme).toContain('npm install && npm start');
    expect(readme).toContain('npm test');
    expect(readme).toContain('http://127.0.0.1:3000');
    for (const command of commandDefinitions) expect(readme).toContain(`/${command.name}`);
    for (const flag of flagDefinitions) expect(readme).toContain(`--${flag.name}`);
  });

  test('names every benchmark in bench/', () => {
    const names = readdirSync(path.join(projectRoot, 'bench')).filter((file) => file.endsWith('.ts') && file !== 'run.ts').map((file) => file.replace(/\.ts$/, ''));
    for (const name of names) expect(readme).toContain(`\`${name}\``);
  });

  test('.ci/run is an executable bash script that runs the README test command', () => {
    const file = path.join(projectRoot, '.ci', 'run');
    expect(statSync(file).mode & 0o111).not.toBe(0);
    const script = readFileSync(file, 'utf8');
    expect(script.startsWith('#!/usr/bin/env bash')).toBe(true);
    expect(script).toContain('set -euo pipefail');
    expect(script).toMatch(/^npm test$/m);
    expect(script).toMatch(/^npm ci$/m);
  });
});
