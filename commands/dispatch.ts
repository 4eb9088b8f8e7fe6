/**
 * Runs a command or a button for any adapter: parses and validates, asks the generation service,
 * and answers with a {@link CommandReply}. Every error becomes an ephemeral message written by
 * `toUserMessage`, so adapters never show internals and never stay silent.
 */
import type { Config } from '../src/config/config.js';
import type { EngineCapabilities, VariationStrength } from '../src/engine/engine.js';
import { ErrorCode, UserError, toUserMessage } from '../src/errors.js';
import type { DeliveryOptions, GenerationService, JobListener, JobTicket, Requester } from '../src/service/types.js';
import { configLimitControls, isAdmin, limitRanges, type ChannelPolicy, type LimitControls, type LimitValues } from './admin.js';
import { decodeButton, jobIdPattern } from './custom-id.js';
import { adjustableLimits, adminActions, findCommand, optionNames, type AdjustableLimit, type AdminAction } from './definitions.js';
import { cancelledText, commandUsage, helpText, infoText, queuedText, settingsText, type TextFormat } from './messages.js';
import { parseImaginePrompt, type PromptLimits, type PromptOptions } from './parse-prompt.js';
import { createUserSettingsStore, type UserSettingsStore } from './user-settings.js';

/** What commands need to know about the deployment. Every field is optional. */
export interface CommandSettings {
  /** The engine's aspect ratios (keys of `capabilities.sizes`); the standard seven when absent. */
  aspectRatios?: readonly string[];
  /** The engine's step and guidance limits. */
  limits?: PromptLimits;
  /** `config.blockedWords`. */
  blockedWords?: readonly string[];
  /** `config.admins`: `platform:userId` entries. */
  admins?: readonly string[];
  /** Per-user defaults; a process-wide in-memory store when absent. */
  userSettings?: UserSettingsStore;
  /** Channel allow/deny list changed by admins; every channel is allowed when absent. */
  channels?: ChannelPolicy;
  /** Runtime limit changes; `admin set-limit` is unsupported when absent. */
  limitControls?: LimitControls;
  /** Markup of reply texts; Discord Markdown by default. */
  format?: TextFormat;
  /** Seeds for prompts without `--seed`; cryptographically random by default. */
  randomSeed?: () => number;
  /** Told about errors that are not the user's (the reply already says something went wrong). */
  onError?: (error: unknown, where: string) => void;
}

/**
 * Builds {@link CommandSettings} from the configuration and the engine's capabilities. Given the
 * whole configuration (the object the service was built with), admins may change limits at
 * runtime through it. For persistent user settings and channel lists use `openCommandSettings`
 * (commands/command-settings.ts).
 */
export function commandSettingsFor(config: Pick<Config, 'blockedWords' | 'admins'> & Partial<Config>, capabilities?: Pick<EngineCapabilities, 'sizes' | 'limits'>, extras: CommandSettings = {}): CommandSettings {
  const hasLimits = [config.rateLimitPerMinute, config.rateLimitBurst, config.maxRunningPerUser, config.maxQueuedPerUser].every((value) => typeof value === 'number');
  return {
    blockedWords: config.blockedWords,
    admins: config.admins,
    ...(hasLimits ? { limitControls: configLimitControls(config as Config) } : {}),
    ...(capabilities ? { aspectRatios: Object.keys(capabilities.sizes), limits: capabilities.limits } : {}),
    ...extras,
  };
}

/** Everything a command runs with; built by the adapter for each interaction. */
export interface CommandContext {
  service: GenerationService;
  requester: Requester;
  /** Hears about the job a command or button starts. */
  listener: JobListener;
  settings: CommandSettings;
  deliveryOptions?: DeliveryOptions;
}

/** What the adapter shows in answer. */
export type CommandReply = { kind: 'job'; ticket: JobTicket; text: string } | { kind: 'message'; text: string; ephemeral: boolean };

/** Option values as adapters receive them. */
export type CommandOptions = Record<string, string | number | boolean | undefined>;

let fallbackUserSettings: UserSettingsStore | undefined;
function userSettingsOf(settings: CommandSettings): UserSettingsStore {
  if (settings.userSettings) return settings.userSettings;
  fallbackUserSettings ??= createUserSettingsStore();
  return fallbackUserSettings;
}

/** Runs the command `name` with its options. Never throws: errors become ephemeral messages. */
export async function runCommand(context: CommandContext, name: string, options: CommandOptions = {}): Promise<CommandReply> {
  countCommand(context, findCommand(name) ? name : 'unknown');
  try {
    const command = findCommand(name);
    if (!command) throw new UserError(ErrorCode.InvalidAction, `There is no command called "${String(name).replace(/[`\p{Cc}]/gu, '').slice(0, 32)}". Try ${commandUsage('help', '', { format: context.settings.format })}.`, { field: 'command' });
    const requester = withAdmin(context);
    if (command.adminOnly && !requester.isAdmin) throw new UserError(ErrorCode.NotPermitted, 'Only the bot’s admins may use this command.', { field: 'command' });
    switch (command.name) {
      case 'imagine':
        return await runImagine(context, requester, options);
      case 'info':
        return message(infoText(await context.service.info(requester), { format: context.settings.format }));
      case 'help':
        return message(helpText({ format: context.settings.format }));
      case 'settings':
        return await runSettings(context, requester, options);
      case 'cancel': {
        const jobId = requireJobId(options[optionNames.job]);
        const job = await context.service.cancel(requester, jobId);
        return message(cancelledText(job, { format: context.settings.format }));
      }
      case 'admin':
        return await runAdmin(context, requester, options);
    }
  } catch (error) {
    return errorReply(context, error, `command ${name}`);
  }
}

/** Runs the button with this custom id. Never throws: errors become ephemeral messages. */
export async function runButton(context: CommandContext, customId: string): Promise<CommandReply> {
  countCommand(context, `button:${buttonKindOf(customId)}`);
  try {
    const action = decodeButton(customId);
    const requester = withAdmin(context);
    await checkChannel(context, requester);
    const { service, listener, deliveryOptions } = context;
    let ticket: JobTicket;
    switch (action.kind) {
      case 'upscale':
        ticket = await service.upscale(requester, action.jobId, action.index, listener, deliveryOptions);
        break;
      case 'vary': {
        let strength: VariationStrength = action.strength;
        if (action.strengthFromSettings) strength = (await userSettingsOf(context.settings).get(requester)).variationStrength ?? action.strength;
        ticket = await service.vary(requester, action.jobId, action.index, strength, listener, deliveryOptions);
        break;
      }
      case 'reroll':
        ticket = await service.reroll(requester, action.jobId, listener, deliveryOptions);
        break;
    }
    return { kind: 'job', ticket, text: queuedText(ticket.position, ticket.etaMs) };
  } catch (error) {
    return errorReply(context, error, 'button');
  }
}

/**
 * Routes the text of a single platform command (Slack's `/imagine <text>`) to a command:
 * `help`, `info`, `settings key:value…`, `cancel <job>` and `admin <action> [key:value…]` when the
 * text starts with that word; anything else is an `imagine` prompt.
 */
export function routeTextCommand(text: string): { name: string; options: CommandOptions } {
  const trimmed = text.trim();
  const [first = '', ...rest] = trimmed.split(/\s+/);
  const word = first.toLowerCase();
  if ((word === 'help' || word === 'info') && rest.length === 0) return { name: word, options: {} };
  if (word === 'cancel' && rest.length === 1) return { name: 'cancel', options: { [optionNames.job]: rest[0] } };
  if (word === 'settings') return { name: 'settings', options: keyValues(rest) };
  if (word === 'admin' && rest.length > 0) {
    const [action = '', ...more] = rest;
    return { name: 'admin', options: { ...keyValues(more), [optionNames.action]: action.toLowerCase() } };
  }
  return { name: 'imagine', options: { [optionNames.prompt]: trimmed } };
}

function keyValues(words: string[]): CommandOptions {
  const options: CommandOptions = {};
  for (const item of words) {
    const index = item.indexOf(':');
    if (index <= 0) continue;
    const key = item.slice(0, index).toLowerCase().replace(/-/g, '_');
    const value = item.slice(index + 1);
    options[key === 'ar' ? optionNames.aspectRatio : key] = value === 'true' ? true : value === 'false' ? false : value;
  }
  return options;
}

async function runImagine(context: CommandContext, requester: Requester, options: CommandOptions): Promise<CommandReply> {
  await checkChannel(context, requester);
  const settings = context.settings;
  const prompt = options[optionNames.prompt];
  const userDefaults = await userSettingsOf(settings).get(requester);
  const native: PromptOptions = {
    aspectRatio: stringOption(options[optionNames.aspectRatio]),
    seed: numericOption(options[optionNames.seed]),
    negativePrompt: stringOption(options[optionNames.negativePrompt]),
    chaos: numericOption(options[optionNames.chaos]),
    steps: numericOption(options.steps),
    guidance: numericOption(options.guidance),
  };
  const parameters = parseImaginePrompt(typeof prompt === 'string' ? prompt : '', {
    ...(settings.aspectRatios ? { aspectRatios: settings.aspectRatios } : {}),
    ...(settings.limits ? { limits: settings.limits } : {}),
    ...(settings.blockedWords ? { blockedWords: settings.blockedWords } : {}),
    ...(settings.randomSeed ? { randomSeed: settings.randomSeed } : {}),
    defaults: { aspectRatio: userDefaults.aspectRatio },
    options: native,
  });
  const ticket = await context.service.imagine(requester, parameters, context.listener, context.deliveryOptions);
  return { kind: 'job', ticket, text: queuedText(ticket.position, ticket.etaMs) };
}

async function runSettings(context: CommandContext, requester: Requester, options: CommandOptions): Promise<CommandReply> {
  const store = userSettingsOf(context.settings);
  const format = context.settings.format;
  if (options[optionNames.reset] === true || options[optionNames.reset] === 'true') {
    await store.reset(requester);
    return message(settingsText({}, { format, changed: true }));
  }
  const ratio = stringOption(options[optionNames.aspectRatio]);
  const variation = stringOption(options[optionNames.variation] ?? options.variation_strength);
  if (ratio === undefined && variation === undefined) return message(settingsText(await store.get(requester), { format }));
  const changes: { aspectRatio?: string; variationStrength?: VariationStrength } = {};
  if (ratio !== undefined) {
    // The parser validates the ratio exactly as it does for `--ar`.
    changes.aspectRatio = parseImaginePrompt(`x --ar ${ratio}`, { ...(context.settings.aspectRatios ? { aspectRatios: context.settings.aspectRatios } : {}), randomSeed: () => 0 }).aspectRatio;
  }
  if (variation !== undefined) {
    const value = variation.toLowerCase();
    if (value !== 'subtle' && value !== 'strong') throw new UserError(ErrorCode.FlagInvalid, 'The variation strength must be subtle or strong.', { field: optionNames.variation });
    changes.variationStrength = value;
  }
  return message(settingsText(await store.update(requester, changes), { format, changed: true }));
}

const limitFields: Record<AdjustableLimit, keyof LimitValues> = {
  rate_per_minute: 'ratePerMinute',
  burst: 'burst',
  max_running: 'maxRunning',
  max_queued: 'maxQueued',
};

async function runAdmin(context: CommandContext, requester: Requester, options: CommandOptions): Promise<CommandReply> {
  const action = stringOption(options[optionNames.action])?.toLowerCase();
  if (!action || !(adminActions as readonly string[]).includes(action)) {
    throw new UserError(ErrorCode.FlagInvalid, `Choose an admin action: ${adminActions.join(', ')}.`, { field: optionNames.action });
  }
  const { settings } = context;
  switch (action as AdminAction) {
    case 'cancel-job': {
      const job = await context.service.cancel(requester, requireJobId(options[optionNames.job]));
      return message(cancelledText(job, { format: settings.format }));
    }
    case 'show-limits':
      return message(limitsText(await requireLimitControls(settings).getLimits()));
    case 'set-limit': {
      const controls = requireLimitControls(settings);
      const limit = stringOption(options[optionNames.limit]);
      if (!limit || !(adjustableLimits as readonly string[]).includes(limit)) {
        throw new UserError(ErrorCode.FlagInvalid, `Choose the limit to change: ${adjustableLimits.join(', ')}.`, { field: optionNames.limit });
      }
      const field = limitFields[limit as AdjustableLimit];
      const range = limitRanges[field];
      const raw = options[optionNames.value];
      const value = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
      if (!Number.isInteger(value) || value < range.min || value > range.max) {
        throw new UserError(ErrorCode.FlagInvalid, `${limit} must be a whole number from ${range.min} to ${range.max}.`, { field: optionNames.value });
      }
      return message(`Saved. ${limitsText(await controls.setLimits({ [field]: value }))}`);
    }
    case 'allow-channel':
    case 'deny-channel':
    case 'clear-channel': {
      const channels = requireChannels(settings);
      const channel = stringOption(options[optionNames.channel]) ?? requester.channelId;
      if (!channel || !/^[A-Za-z0-9_.:-]{1,100}$/.test(channel)) throw new UserError(ErrorCode.FlagInvalid, 'Name the channel by its id (or run this in the channel).', { field: optionNames.channel });
      const verb = action === 'allow-channel' ? 'allow' : action === 'deny-channel' ? 'deny' : 'clear';
      await channels[verb](requester.platform, channel);
      const done = verb === 'allow' ? 'now allowed' : verb === 'deny' ? 'now denied' : 'back to the default';
      return message(`Channel ${channel} on ${requester.platform} is ${done}.`);
    }
    case 'list-channels': {
      const lists = await requireChannels(settings).list();
      return message([`Allowed: ${lists.allowed.join(', ') || '(all channels without a list)'}`, `Denied: ${lists.denied.join(', ') || '(none)'}`].join('\n'));
    }
  }
}

function limitsText(limits: LimitValues): string {
  return `Limits per user: ${limits.ratePerMinute} jobs a minute, bursts of ${limits.burst}, ${limits.maxRunning} running and ${limits.maxQueued} queued at most.`;
}

function requireLimitControls(settings: CommandSettings): LimitControls {
  if (!settings.limitControls) throw new UserError(ErrorCode.Unsupported, 'Changing limits at runtime is not available in this deployment; set them in the configuration and restart.', { field: optionNames.action });
  return settings.limitControls;
}

function requireChannels(settings: CommandSettings): ChannelPolicy {
  if (!settings.channels) throw new UserError(ErrorCode.Unsupported, 'Channel lists are not available in this deployment; use the platform allow-list settings instead.', { field: optionNames.action });
  return settings.channels;
}

async function checkChannel(context: CommandContext, requester: Requester): Promise<void> {
  if (!context.settings.channels || requester.isAdmin) return;
  if (!(await context.settings.channels.isAllowed(requester))) {
    throw new UserError(ErrorCode.NotPermitted, 'The bot is not drawing in this channel. Please use another channel.', { field: optionNames.channel });
  }
}

function withAdmin(context: CommandContext): Requester {
  const admin = isAdmin(context.requester, context.settings.admins);
  return admin === (context.requester.isAdmin === true) ? context.requester : { ...context.requester, isAdmin: admin };
}

function requireJobId(value: unknown): string {
  const jobId = typeof value === 'string' ? value.trim() : '';
  if (!jobIdPattern.test(jobId)) throw new UserError(ErrorCode.JobNotFound, 'That is not a job id; /info lists your jobs.', { field: optionNames.job });
  return jobId;
}

function stringOption(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim() === '' ? undefined : value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

function numericOption(value: unknown): number | string | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '') return value;
  return undefined;
}

function message(text: string, ephemeral = true): CommandReply {
  return { kind: 'message', text, ephemeral };
}

function errorReply(context: CommandContext, error: unknown, where: string): CommandReply {
  const userFacing = error instanceof UserError || (typeof error === 'object' && error !== null && (error as { userFacing?: unknown }).userFacing === true);
  if (!userFacing) {
    try {
      context.settings?.onError?.(error, where);
    } catch {
      // A failing logger must not hide the reply.
    }
  }
  return message(toUserMessage(error));
}

/** Every platform's commands are counted here, once, so /metrics sees them all alike. */
function countCommand(context: CommandContext, command: string): void {
  try {
    context.service.countCommand?.(context.requester.platform, command);
  } catch {
    // Counting must never break a command.
  }
}

function buttonKindOf(customId: string): string {
  try {
    return decodeButton(customId).kind;
  } catch {
    return 'invalid';
  }
}
