import { buttonRowsFor, commandDefinitions, findCommand } from '../../commands/definitions.js';
import { decodeButton } from '../../commands/custom-id.js';
import { jobRecord } from './job-record.js';

describe('command definitions', () => {
  test('names, descriptions and options follow the tightest platform rules (Discord)', () => {
    const names = new Set<string>();
    for (const command of commandDefinitions) {
      expect(command.name).toMatch(/^[a-z0-9_-]{1,32}$/);
      expect(names.has(command.name)).toBe(false);
      names.add(command.name);
      expect(command.description.length).toBeGreaterThan(0);
      expect(command.description.length).toBeLessThanOrEqual(100);
      expect(command.options.length).toBeLessThanOrEqual(25);
      let seenOptional = false;
      for (const option of command.options) {
        expect(option.name).toMatch(/^[a-z0-9_-]{1,32}$/);
        expect(option.description.length).toBeLessThanOrEqual(100);
        // Discord wants required options first.
        if (!option.required) seenOptional = true;
        else expect(seenOptional).toBe(false);
        expect((option.choices ?? []).length).toBeLessThanOrEqual(25);
        if (option.min !== undefined && option.max !== undefined) expect(option.min).toBeLessThanOrEqual(option.max);
      }
    }
    expect([...names]).toEqual(expect.arrayContaining(['imagine', 'info', 'help', 'settings', 'admin', 'cancel']));
  });

  test('imagine has the prompt and the native options; admin is admin-only and not in DMs', () => {
    const imagine = findCommand('imagine')!;
    expect(imagine.options.map((option) => option.name)).toEqual(['prompt', 'aspect_ratio', 'seed', 'negative_prompt', 'chaos']);
    expect(imagine.options.find((option) => option.name === 'aspect_ratio')!.choices!.map((choice) => choice.value)).toEqual(['1:1', '3:2', '2:3', '4:3', '3:4', '16:9', '9:16']);
    expect(imagine.options.find((option) => option.name === 'seed')).toMatchObject({ type: 'integer', min: 0, max: 4294967295 });
    const admin = findCommand('admin')!;
    expect(admin.adminOnly).toBe(true);
    expect(admin.dmPermission).toBe(false);
    expect(commandDefinitions.filter((command) => command.adminOnly).map((command) => command.name)).toEqual(['admin']);
  });
});

describe('buttonRowsFor', () => {
  test('a grid gets U1..U4, V1..V4 and re-roll, each id decoding to its action', () => {
    const rows = buttonRowsFor(jobRecord());
    expect(rows.map((row) => row.map((button) => button.label))).toEqual([['U1', 'U2', 'U3', 'U4'], ['V1', 'V2', 'V3', 'V4'], ['🔄']]);
    for (const row of rows) {
      expect(row.length).toBeLessThanOrEqual(5);
      for (const button of row) {
        expect(decodeButton(button.customId)).toEqual(button.action);
        expect(button.customId.length).toBeLessThanOrEqual(100);
      }
    }
    expect(rows[0]![2]!.action).toEqual({ kind: 'upscale', jobId: 'job_123', index: 3 });
    expect(rows[1]![0]!.action).toMatchObject({ kind: 'vary', index: 1, strengthFromSettings: true });
  });

  test('variations and re-rolls are grids too', () => {
    expect(buttonRowsFor(jobRecord({ kind: 'variation', strength: 'subtle', parent: { jobId: 'p', index: 2 } }))).toHaveLength(3);
    expect(buttonRowsFor(jobRecord({ kind: 'reroll' }))).toHaveLength(3);
  });

  test('an upscale gets Vary (Subtle), Vary (Strong) and re-roll', () => {
    const rows = buttonRowsFor(jobRecord({ kind: 'upscale', seeds: [9], parent: { jobId: 'p', index: 2 } }));
    expect(rows.map((row) => row.map((button) => button.label))).toEqual([['Vary (Subtle)', 'Vary (Strong)', '🔄']]);
    expect(rows[0]![0]!.action).toEqual({ kind: 'vary', jobId: 'job_123', index: 1, strength: 'subtle' });
    expect(rows[0]![1]!.action).toEqual({ kind: 'vary', jobId: 'job_123', index: 1, strength: 'strong' });
  });

  test('unfinished jobs get no buttons, failed ones a re-roll', () => {
    expect(buttonRowsFor(jobRecord({ status: 'queued' }))).toEqual([]);
    expect(buttonRowsFor(jobRecord({ status: 'running' }))).toEqual([]);
    expect(buttonRowsFor(jobRecord({ status: 'failed' })).flat().map((button) => button.action.kind)).toEqual(['reroll']);
  });
});
