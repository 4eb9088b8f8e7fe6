/**
 * Every user-facing text of the bot, shared by all platforms so that they read alike. Texts use
 * Discord-style Markdown by default; pass `format: 'mrkdwn'` for Slack or `'plain'` for the
 * playground and the CLI. User-supplied text (prompts, names) is escaped for the format and can
 * never ping `@everyone` or break out of formatting.
 */
import { deserializeError, toUserMessage, type SerializedError } from '../src/errors.js';
import type { ImagineParameters, InfoSnapshot, JobRecord } from '../src/service/types.js';
import { commandDefinitions } from './definitions.js';
import { flagDefinitions, maxPromptLength, maxSeed } from './parse-prompt.js';
import type { UserSettings } from './user-settings.js';

/** How a text is marked up. */
export type TextFormat = 'markdown' | 'mrkdwn' | 'plain';

/** Options common to the texts. */
export interface TextOptions {
  format?: TextFormat;
  /**
   * How commands are written: `slash` (`/info`, Discord and the playground) or `subcommand`
   * (`/imagine info`, Slack's single command). Default: `subcommand` for mrkdwn, else `slash`.
   */
  commandStyle?: 'slash' | 'subcommand';
}

/** How a user types command `name` with `rest`, in the style of the options. */
export function commandUsage(name: string, rest: string, options: TextOptions = {}): string {
  const style = options.commandStyle ?? (options.format === 'mrkdwn' ? 'subcommand' : 'slash');
  const head = style === 'subcommand' && name !== 'imagine' ? `/imagine ${name}` : `/${name}`;
  return rest ? `${head} ${rest}` : head;
}

/** "about 12 s", "about 3 min", "about 1 h 5 min"; "a moment" under a second. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 1000) return 'a moment';
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `about ${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? `about ${hours} h` : `about ${hours} h ${rest} min`;
}

/**
 * "Queued — #3 in line, ready in about 40 s." `position` 0 means the job is already running;
 * `etaMs` is the service's estimate of when the images will be ready.
 */
export function queuedText(position: number, etaMs: number): string {
  if (!Number.isFinite(position) || position <= 0) return `Starting… ready in ${formatDuration(etaMs)}.`;
  const place = position === 1 ? '#1 in line (next up)' : `#${Math.round(position)} in line`;
  return `Queued — ${place}, ready in ${formatDuration(etaMs)}.`;
}

/** A ten-segment text progress bar. */
export function progressBar(fraction: number, segments = 10): string {
  const clamped = clampFraction(fraction);
  const filled = Math.floor(clamped * segments + 1e-9);
  return '▰'.repeat(filled) + '▱'.repeat(segments - filled);
}

/** "Generating… 40% ▰▰▰▰▱▱▱▱▱▱ about 12 s left" */
export function progressText(fraction: number, etaMs?: number): string {
  const percent = Math.floor(clampFraction(fraction) * 100);
  const left = etaMs === undefined || !Number.isFinite(etaMs) ? '' : ` · ${formatDuration(etaMs)} left`;
  return `Generating… ${percent}% ${progressBar(fraction)}${left}`;
}

/** Shown when a worker died and the job starts again. */
export function retryingText(attempt: number): string {
  return `Something interrupted the drawing; trying again (attempt ${attempt + 1})…`;
}

/**
 * Shown once when the bot restarts (or is redeployed) while a job waits or runs: the job goes on,
 * and the bot that comes next posts its result in the same place.
 */
export function handedOverText(running: boolean): string {
  return running
    ? '🔁 The bot is restarting. Your picture is still being drawn, and the result will still be posted here.'
    : '🔁 The bot is restarting. Your job keeps its place in line, and the result will still be posted here.';
}

/** The flags that reproduce a job's parameters, e.g. `--ar 16:9 --seed 42 --chaos 20 --no text`. */
export function parametersText(parameters: ImagineParameters): string {
  const parts = [`--ar ${parameters.aspectRatio}`, `--seed ${parameters.seed}`];
  if (parameters.chaos > 0) parts.push(`--chaos ${parameters.chaos}`);
  if (parameters.steps !== undefined) parts.push(`--steps ${parameters.steps}`);
  if (parameters.guidance !== undefined) parts.push(`--guidance ${parameters.guidance}`);
  if (parameters.negativePrompt) parts.push(`--no ${parameters.negativePrompt}`);
  return parts.join(' ');
}

/** The note added when the text encoder cut a long prompt. */
export const truncationNotice = 'Note: the prompt was longer than the model can read, so only its beginning was used.';

/** Options for {@link resultCaption}. */
export interface CaptionOptions extends TextOptions {
  /** How to name who asked, e.g. a platform mention; `<@id>` on Discord and Slack, the display name elsewhere. */
  mention?: string;
}

/**
 * The caption of a finished job: the prompt, the flags that reproduce it, what kind of result it
 * is, who asked, and the truncation notice when the prompt was cut.
 */
export function resultCaption(job: JobRecord, options: CaptionOptions = {}): string {
  const format = options.format ?? 'markdown';
  const prompt = bold(escapeText(job.parameters.prompt, format), format);
  const who = options.mention ?? mentionFor(job, format);
  let what: string;
  switch (job.kind) {
    case 'upscale':
      what = `Image #${job.parent?.index ?? '?'} upscaled`;
      break;
    case 'variation':
      what = `Variations (${job.strength === 'subtle' ? 'Subtle' : 'Strong'}) of image #${job.parent?.index ?? '?'}`;
      break;
    case 'reroll':
      what = 'Re-rolled';
      break;
    default:
      what = '';
  }
  const flags = code(escapeCode(parametersText(job.parameters)), format);
  const head = [prompt, flags].join(' ');
  const tail = [what, who].filter(Boolean).join(' — ');
  const lines = [`${head} — ${tail}`];
  if (job.promptTruncated) lines.push(italic(truncationNotice, format));
  return lines.join('\n');
}

/** Shown instead of a result when a job failed, was cancelled or timed out. */
export function failedText(error: unknown): string {
  const value = isSerializedError(error) ? deserializeError(error) : error;
  const code = isSerializedError(error) ? error.code : (value as { code?: unknown } | undefined)?.code;
  const icon = code === 'cancelled' ? '🛑' : '❌';
  return `${icon} ${toUserMessage(value)}`;
}

/** Confirms a cancellation. */
export function cancelledText(job: Pick<JobRecord, 'id' | 'parameters'>, options: TextOptions = {}): string {
  const format = options.format ?? 'markdown';
  return `🛑 Cancelled job ${code(job.id, format)} (${escapeText(shortPrompt(job.parameters.prompt), format)}).`;
}

/** What `info` shows a user. */
export function infoText(snapshot: InfoSnapshot, options: TextOptions = {}): string {
  const format = options.format ?? 'markdown';
  const lines: string[] = [];
  lines.push(bold('Your jobs', format));
  if (snapshot.running.length === 0 && snapshot.queued.length === 0) lines.push('Nothing running or queued.');
  for (const job of snapshot.running) lines.push(`• Running ${code(job.id, format)} — ${escapeText(shortPrompt(job.parameters.prompt), format)}`);
  for (const { job, position } of snapshot.queued) lines.push(`• Queued #${position} ${code(job.id, format)} — ${escapeText(shortPrompt(job.parameters.prompt), format)}`);
  const limits = snapshot.limits;
  lines.push(bold('Your limits', format));
  lines.push(`${limits.ratePerMinute} jobs a minute (bursts of ${limits.burst}); ${limits.tokensLeft} available now${limits.tokensLeft < 1 ? `, the next in ${formatDuration(limits.nextTokenInMs)}` : ''}.`);
  lines.push(`At most ${limits.maxRunning} running and ${limits.maxQueued} queued at once.`);
  lines.push(bold('Queue', format));
  lines.push(`${snapshot.queueLength} waiting, ${snapshot.slots} drawing at once${snapshot.averageJobMs > 0 ? `, ${formatDuration(snapshot.averageJobMs)} a job` : ''}.`);
  lines.push(`${bold('Engine', format)}: ${escapeText(snapshot.engine, format)}`);
  return lines.join('\n');
}

/** The help text: commands, flags and buttons. */
export function helpText(options: TextOptions = {}): string {
  const format = options.format ?? 'markdown';
  const lines: string[] = [];
  lines.push(bold('Imagine draws four pictures from a text prompt.', format));
  lines.push(`Example: ${code('/imagine a lighthouse at dusk, oil painting --ar 16:9 --no people', format)}`);
  lines.push('');
  lines.push(bold('Commands', format));
  const subcommand = (options.commandStyle ?? (format === 'mrkdwn' ? 'subcommand' : 'slash')) === 'subcommand';
  for (const command of commandDefinitions) {
    const usage = command.name === 'imagine' ? commandUsage('imagine', '<prompt>', options) : commandUsage(command.name, subcommand ? subcommandHint[command.name] ?? '' : '', options);
    lines.push(`• ${code(usage, format)} — ${command.description}`);
  }
  lines.push('');
  lines.push(bold('Flags (after the prompt; — works as well as --)', format));
  const describe: Record<string, string> = {
    ar: 'aspect ratio such as 1:1 (default), 3:2, 2:3, 4:3, 3:4, 16:9, 9:16',
    seed: `a number 0..${maxSeed} for repeatable pictures (random by default)`,
    no: 'words the pictures should not show (all words up to the next flag)',
    chaos: '0..100, how different the four pictures are (default 0)',
    steps: "denoising steps (more is slower, the engine's default otherwise)",
    guidance: 'how closely to follow the prompt (alias --cfg)',
  };
  for (const flag of flagDefinitions) lines.push(`• ${code(flag.example, format)} — ${describe[flag.name] ?? flag.noun}`);
  lines.push(`A prompt may have up to ${maxPromptLength} characters (Unicode code points), flags not counted.`);
  lines.push('');
  lines.push(bold('Buttons', format));
  lines.push('• U1–U4 upscale one picture · V1–V4 make variations of one · 🔄 draws four new ones.');
  lines.push('• Pictures are numbered left to right, top to bottom.');
  return lines.join('\n');
}

/** What `settings` shows after a change. */
export function settingsText(settings: UserSettings, options: TextOptions & { changed?: boolean } = {}): string {
  const format = options.format ?? 'markdown';
  const head = options.changed ? 'Saved. Your settings:' : 'Your settings:';
  return [
    bold(head, format),
    `• Aspect ratio: ${settings.aspectRatio ?? '1:1 (default)'}`,
    `• Variation strength (V1–V4): ${settings.variationStrength ?? 'strong (default)'}`,
    `Change them with ${code(commandUsage('settings', 'aspect_ratio:16:9 variation:subtle', options), format)}; ${code(commandUsage('settings', 'reset:true', options), format)} forgets them.`,
  ].join('\n');
}

/** What follows `/imagine <name>` in Slack's single-command style. */
const subcommandHint: Record<string, string> = {
  settings: '[aspect_ratio:16:9] [variation:subtle] [reset:true]',
  cancel: '<job id>',
  admin: '<action> [job:<id>] [limit:<name> value:<n>] [channel:<id>]',
};

function mentionFor(job: JobRecord, format: TextFormat): string {
  const { platform, userId, displayName } = job.requester;
  if ((platform === 'discord' || platform === 'slack') && /^[A-Za-z0-9_-]{1,40}$/.test(userId)) return `<@${userId}>`;
  return escapeText(displayName ?? userId, format);
}

function shortPrompt(prompt: string, max = 60): string {
  const points = Array.from(prompt);
  return points.length > max ? `"${points.slice(0, max).join('')}…"` : `"${prompt}"`;
}

function clampFraction(fraction: number): number {
  return Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
}

function bold(text: string, format: TextFormat): string {
  if (format === 'plain') return text;
  return format === 'mrkdwn' ? `*${text}*` : `**${text}**`;
}

function italic(text: string, format: TextFormat): string {
  if (format === 'plain') return text;
  return `_${text}_`;
}

function code(text: string, format: TextFormat): string {
  return format === 'plain' ? text : `\`${text.replace(/`/g, 'ˋ')}\``;
}

function escapeCode(text: string): string {
  return text.replace(/`/g, 'ˋ');
}

/**
 * Escapes user text for a format: Markdown control characters for Discord, `& < >` for Slack, and
 * everywhere a zero-width space stops `@everyone`, `@here` and `<@…>` from becoming mentions.
 */
export function escapeText(text: string, format: TextFormat = 'markdown'): string {
  let result = text.replace(/@(everyone|here|channel)/gi, '@\u200b$1');
  if (format === 'markdown') result = result.replace(/([\\*_~|`[\]])/g, '\\$1').replace(/<([@#!:&a])/g, '<\u200b$1');
  else if (format === 'mrkdwn') result = result.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/([*_~`])/g, '\u200b$1\u200b');
  return result;
}

function isSerializedError(value: unknown): value is SerializedError {
  return typeof value === 'object' && value !== null && !(value instanceof Error) && typeof (value as SerializedError).code === 'string' && typeof (value as SerializedError).message === 'string' && typeof (value as SerializedError).name === 'string';
}
