/**
 * Every command and button, defined once for every adapter. The Discord adapter converts these
 * definitions to its registration JSON, Slack and the playground read the same names and options.
 * Names follow Discord's rules (lower case, at most 32 characters), descriptions fit in 100.
 */
import { standardAspectRatios } from '../src/engine/engine.js';
import type { JobRecord } from '../src/service/types.js';
import { encodeButton, type ButtonAction } from './custom-id.js';
import { maxPromptLength, maxSeed } from './parse-prompt.js';

/** The value types an option may have. */
export type OptionType = 'string' | 'integer' | 'number' | 'boolean';

/** A fixed choice of an option. */
export interface OptionChoice {
  name: string;
  value: string | number;
}

/** One option of a command. */
export interface OptionDefinition {
  name: string;
  description: string;
  type: OptionType;
  required: boolean;
  choices?: readonly OptionChoice[];
  /** For integer and number options. */
  min?: number;
  max?: number;
  /** For string options, in characters. */
  minLength?: number;
  maxLength?: number;
}

/** One command. */
export interface CommandDefinition {
  name: CommandName;
  description: string;
  options: readonly OptionDefinition[];
  /** Only admins may run it (adapters may also hide it from others where the platform allows). */
  adminOnly: boolean;
  /** Whether it may be used in direct messages. */
  dmPermission: boolean;
}

/** The commands that exist. */
export type CommandName = 'imagine' | 'info' | 'help' | 'settings' | 'cancel' | 'admin';

/** Option names, shared so that adapters and dispatch agree. */
export const optionNames = {
  prompt: 'prompt',
  aspectRatio: 'aspect_ratio',
  seed: 'seed',
  negativePrompt: 'negative_prompt',
  chaos: 'chaos',
  variation: 'variation',
  reset: 'reset',
  job: 'job',
  action: 'action',
  limit: 'limit',
  value: 'value',
  channel: 'channel',
} as const;

/** What the `admin` command can do. */
export const adminActions = ['cancel-job', 'show-limits', 'set-limit', 'allow-channel', 'deny-channel', 'clear-channel', 'list-channels'] as const;
export type AdminAction = (typeof adminActions)[number];

/** The limits an admin may change at runtime (see `LimitControls` in commands/admin.ts). */
export const adjustableLimits = ['rate_per_minute', 'burst', 'max_running', 'max_queued'] as const;
export type AdjustableLimit = (typeof adjustableLimits)[number];

/** The most characters the `prompt` option accepts (the prompt itself, flags removed, may have 400). */
export const maxPromptOptionLength = 2000;

const aspectRatioChoices: OptionChoice[] = standardAspectRatios.map((ratio) => ({ name: ratio, value: ratio }));
const strengthChoices: OptionChoice[] = [
  { name: 'subtle', value: 'subtle' },
  { name: 'strong', value: 'strong' },
];

/** Every command, in the order help lists them. */
export const commandDefinitions: readonly CommandDefinition[] = [
  {
    name: 'imagine',
    description: 'Draw four pictures from a prompt (flags: --ar 16:9 --seed 42 --no text --chaos 50).',
    adminOnly: false,
    dmPermission: true,
    options: [
      { name: optionNames.prompt, description: 'What to draw, optionally followed by flags such as --ar 16:9', type: 'string', required: true, minLength: 1, maxLength: maxPromptOptionLength },
      { name: optionNames.aspectRatio, description: 'Width to height of the pictures (default 1:1 or your setting)', type: 'string', required: false, choices: aspectRatioChoices },
      { name: optionNames.seed, description: `Seed for repeatable results, 0..${maxSeed}`, type: 'integer', required: false, min: 0, max: maxSeed },
      { name: optionNames.negativePrompt, description: 'What the pictures should not show (same as --no)', type: 'string', required: false, maxLength: maxPromptLength },
      { name: optionNames.chaos, description: 'How different the four pictures are, 0..100', type: 'integer', required: false, min: 0, max: 100 },
    ],
  },
  { name: 'info', description: 'Your running and queued jobs, your limits and the queue.', adminOnly: false, dmPermission: true, options: [] },
  { name: 'help', description: 'How to use the bot: commands, flags and buttons.', adminOnly: false, dmPermission: true, options: [] },
  {
    name: 'settings',
    description: 'Your defaults: aspect ratio and variation strength.',
    adminOnly: false,
    dmPermission: true,
    options: [
      { name: optionNames.aspectRatio, description: 'Aspect ratio used when a prompt gives none', type: 'string', required: false, choices: aspectRatioChoices },
      { name: optionNames.variation, description: 'Strength of the V1–V4 buttons', type: 'string', required: false, choices: strengthChoices },
      { name: optionNames.reset, description: 'Forget your settings', type: 'boolean', required: false },
    ],
  },
  {
    name: 'cancel',
    description: 'Cancel one of your queued or running jobs.',
    adminOnly: false,
    dmPermission: true,
    options: [{ name: optionNames.job, description: 'The job id (shown by /info)', type: 'string', required: true, minLength: 1, maxLength: 40 }],
  },
  {
    name: 'admin',
    description: 'Admins only: cancel any job, change limits, allow or deny channels.',
    adminOnly: true,
    dmPermission: false,
    options: [
      { name: optionNames.action, description: 'What to do', type: 'string', required: true, choices: adminActions.map((action) => ({ name: action, value: action })) },
      { name: optionNames.job, description: 'The job id (cancel-job)', type: 'string', required: false, maxLength: 40 },
      { name: optionNames.limit, description: 'The limit to change (set-limit)', type: 'string', required: false, choices: adjustableLimits.map((limit) => ({ name: limit, value: limit })) },
      { name: optionNames.value, description: 'The new value of the limit (set-limit)', type: 'integer', required: false, min: 0, max: 10000 },
      { name: optionNames.channel, description: 'The channel id; the current channel when empty', type: 'string', required: false, maxLength: 100 },
    ],
  },
];

/** The definition of `name`, or undefined. */
export function findCommand(name: string): CommandDefinition | undefined {
  return commandDefinitions.find((command) => command.name === name);
}

/** One button as every adapter draws it. */
export interface ButtonSpec {
  label: string;
  customId: string;
  action: ButtonAction;
  style: 'primary' | 'secondary';
}

function button(label: string, action: ButtonAction, style: ButtonSpec['style'] = 'secondary'): ButtonSpec {
  return { label, action, style, customId: encodeButton(action) };
}

/** The re-roll button's label. */
export const rerollLabel = '🔄';

/**
 * The buttons under a job's message: a grid gets [U1..U4], [V1..V4], [🔄]; an upscaled image gets
 * [Vary (Subtle), Vary (Strong), 🔄]; a failed or cancelled job gets [🔄] to try again; a job that
 * has not finished gets none.
 */
export function buttonRowsFor(job: JobRecord): ButtonSpec[][] {
  if (job.status === 'failed' || job.status === 'cancelled') return [[button(rerollLabel, { kind: 'reroll', jobId: job.id })]];
  if (job.status !== 'completed') return [];
  if (job.kind === 'upscale') {
    return [[
      button('Vary (Subtle)', { kind: 'vary', jobId: job.id, index: 1, strength: 'subtle' }),
      button('Vary (Strong)', { kind: 'vary', jobId: job.id, index: 1, strength: 'strong' }),
      button(rerollLabel, { kind: 'reroll', jobId: job.id }),
    ]];
  }
  const count = Math.min(4, Math.max(1, job.images?.length || job.seeds.length || 4));
  const indexes = Array.from({ length: count }, (_, index) => index + 1);
  return [
    indexes.map((index) => button(`U${index}`, { kind: 'upscale', jobId: job.id, index })),
    indexes.map((index) => button(`V${index}`, { kind: 'vary', jobId: job.id, index, strength: 'strong', strengthFromSettings: true })),
    [button(rerollLabel, { kind: 'reroll', jobId: job.id })],
  ];
}
