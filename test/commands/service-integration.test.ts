/**
 * Dispatch against the real QueueGenerationService and the core's FakeEngine: commands and buttons
 * end to end, buttons drawn by buttonRowsFor, limits changed by admin at runtime.
 */
import { configLimitControls, createChannelPolicy } from '../../commands/admin.js';
import { buttonRowsFor } from '../../commands/definitions.js';
import { commandSettingsFor, runButton, runCommand, type CommandContext, type CommandReply } from '../../commands/dispatch.js';
import { resultCaption } from '../../commands/messages.js';
import { createUserSettingsStore } from '../../commands/user-settings.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { SerializedError } from '../../src/errors.js';
import { createGenerationService, type RunningGenerationService } from '../../src/service/generation-service.js';
import type { JobListener, JobOutput, JobRecord, Requester } from '../../src/service/types.js';
import { FakeEngine } from '../fakes/fake-engine.js';

interface Waiter extends JobListener {
  done: Promise<{ output?: JobOutput; error?: SerializedError; job: JobRecord }>;
}

function waiter(): Waiter {
  let settle!: (value: { output?: JobOutput; error?: SerializedError; job: JobRecord }) => void;
  const done = new Promise<{ output?: JobOutput; error?: SerializedError; job: JobRecord }>((resolve) => (settle = resolve));
  return { done, completed: (output) => settle({ output, job: output.job }), failed: ({ job, error }) => settle({ job, error }) };
}

let service: RunningGenerationService;
let engine: FakeEngine;
let config: Config;
const userSettings = createUserSettingsStore();
const ada: Requester = { platform: 'test', userId: 'ada', displayName: 'Ada', channelId: 'c1' };
const bob: Requester = { platform: 'test', userId: 'bob', displayName: 'Bob', channelId: 'c1' };
const root: Requester = { platform: 'test', userId: 'root', channelId: 'c1' };

beforeEach(async () => {
  config = loadConfig({ storeUrl: 'memory://', logLevel: 'silent', admins: ['test:root'], blockedWords: ['forbidden'] }, {}, false);
  engine = new FakeEngine();
  service = await createGenerationService({ config, engine });
});
afterEach(async () => {
  await service.shutdown(0);
});

function context(requester: Requester, listener: JobListener): CommandContext {
  const settings = commandSettingsFor(config, engine.capabilities, { userSettings, channels: createChannelPolicy(), limitControls: configLimitControls(config), randomSeed: () => 1234 });
  return { service, requester, listener, settings };
}

function jobOf(reply: CommandReply): JobRecord {
  if (reply.kind !== 'job') throw new Error(`expected a job, got: ${reply.text}`);
  return reply.ticket.job;
}

test('imagine → U2 → Vary (Subtle) → 🔄, each through the buttons buttonRowsFor draws', async () => {
  const first = waiter();
  jobOf(await runCommand(context(ada, first), 'imagine', { prompt: 'a red circle --ar 3:2 --chaos 10', seed: 77 }));
  const grid = await first.done;
  expect(grid.output).toBeDefined();
  expect(grid.job).toMatchObject({ status: 'completed', kind: 'imagine', parameters: { prompt: 'a red circle', aspectRatio: '3:2', seed: 77, chaos: 10 } });
  expect(engine.calls[0]).toMatchObject({ width: engine.capabilities.sizes['3:2']!.width });
  expect(resultCaption(grid.job, { format: 'plain' })).toContain('--ar 3:2 --seed 77 --chaos 10');

  const rows = buttonRowsFor(grid.job);
  const upscaleListener = waiter();
  jobOf(await runButton(context(bob, upscaleListener), rows[0]![1]!.customId));
  const upscaled = await upscaleListener.done;
  expect(upscaled.job).toMatchObject({ kind: 'upscale', status: 'completed', parent: { jobId: grid.job.id, index: 2 } });
  expect(engine.calls[1]).toMatchObject({ method: 'upscale', sourceSeed: grid.job.seeds[1] });

  const upscaleRows = buttonRowsFor(upscaled.job);
  expect(upscaleRows[0]!.map((button) => button.label)).toEqual(['Vary (Subtle)', 'Vary (Strong)', '🔄']);
  const varyListener = waiter();
  jobOf(await runButton(context(bob, varyListener), upscaleRows[0]![0]!.customId));
  const varied = await varyListener.done;
  expect(varied.job).toMatchObject({ kind: 'variation', status: 'completed', strength: 'subtle' });
  expect(engine.calls[2]).toMatchObject({ method: 'vary', strength: 'subtle' });

  const rerollListener = waiter();
  jobOf(await runButton(context(ada, rerollListener), buttonRowsFor(grid.job)[2]![0]!.customId));
  const rerolled = await rerollListener.done;
  expect(rerolled.job).toMatchObject({ kind: 'reroll', status: 'completed' });
  expect(rerolled.job.parameters.prompt).toBe('a red circle');
});

test('V buttons use the clicking user’s saved strength', async () => {
  const first = waiter();
  jobOf(await runCommand(context(ada, first), 'imagine', { prompt: 'waves' }));
  const grid = await first.done;
  await runCommand(context(bob, waiter()), 'settings', { variation: 'subtle' });
  const varyListener = waiter();
  jobOf(await runButton(context(bob, varyListener), buttonRowsFor(grid.job)[1]![3]!.customId));
  expect((await varyListener.done).job).toMatchObject({ kind: 'variation', strength: 'subtle', parent: { index: 4 } });
});

test('the real service’s refusals become ephemeral messages', async () => {
  engine.configure({ hold: true });
  const held = waiter();
  const job = jobOf(await runCommand(context(ada, held), 'imagine', { prompt: 'slow' }));
  const refused = await runCommand(context(bob, waiter()), 'cancel', { job: job.id });
  expect(refused).toMatchObject({ kind: 'message', ephemeral: true });
  expect(refused.text.length).toBeGreaterThan(0);
  expect(refused.text).not.toContain('Cancelled job');
  expect(await runCommand(context(ada, waiter()), 'imagine', { prompt: 'FORBIDDEN things' })).toMatchObject({ kind: 'message', ephemeral: true });
  expect((await runButton(context(ada, waiter()), 'im1:u:unknownjob:1')).text).toContain('expired');
  const cancelled = await runCommand(context(root, waiter()), 'admin', { action: 'cancel-job', job: job.id });
  expect(cancelled.text).toContain('Cancelled job');
  expect((await held.done).error?.code).toBe('cancelled');
});

test('admin set-limit applies to the next request', async () => {
  engine.configure({ hold: true });
  const reply = await runCommand(context(root, waiter()), 'admin', { action: 'set-limit', limit: 'burst', value: 1 });
  expect(reply.text).toContain('bursts of 1');
  await runCommand(context(root, waiter()), 'admin', { action: 'set-limit', limit: 'max_queued', value: 10 });
  expect((await runCommand(context(ada, waiter()), 'imagine', { prompt: 'one' })).kind).toBe('job');
  const second = await runCommand(context(ada, waiter()), 'imagine', { prompt: 'two' });
  expect(second.kind).toBe('message');
  expect(second.text).toContain('too quickly');
  const info = await runCommand(context(ada, waiter()), 'info', {});
  expect(info.text).toContain('bursts of 1');
  engine.releaseAll();
});
