/**
 * Turns a Discord interaction (from the gateway or the HTTP endpoint, the same JSON either way)
 * into a plain call of commands/dispatch.ts, and its answer into Discord REST calls. The first
 * answer goes through `respond` (a REST callback on the gateway, the HTTP response body on the
 * endpoint); everything after uses the interaction's webhook, or the bot token once that expired.
 */
import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  InteractionResponseType,
  InteractionType,
  MessageFlags,
  PermissionFlagsBits,
  Routes,
  type APIApplicationCommandInteractionDataOption,
  type APIInteraction,
  type APIInteractionResponse,
  type REST,
} from 'discord.js';
import { runButton, runCommand, type CommandOptions, type CommandReply, type CommandSettings } from '../../commands/dispatch.js';
import type { Config } from '../../src/config/config.js';
import { ErrorCode, ImagineError, serializeError, toUserMessage } from '../../src/errors.js';
import type { Logger } from '../../src/logger.js';
import type { GenerationService, Requester } from '../../src/service/types.js';
import { adminPermission } from './components.js';
import { defaultDeliveryTiming, isTokenError, JobDelivery, realTimers, type DeliveryTimers, type DeliveryTiming } from './job-delivery.js';

/** Sends the interaction's first response; resolves once Discord has it (or it was sent). */
export type InitialResponder = (response: APIInteractionResponse) => Promise<void>;

/** Discord's upload limit when the interaction does not carry attachment_size_limit. */
export const defaultAttachmentLimit = 10 * 1024 * 1024;

export interface InteractionHandlerOptions {
  rest: REST;
  config: Pick<Config, 'discordApplicationId' | 'discordGuilds' | 'discordChannels' | 'admins'>;
  service: GenerationService;
  logger: Logger;
  commandSettings: CommandSettings;
  timing?: Partial<DeliveryTiming>;
  timers?: DeliveryTimers;
  /**
   * How long a command may take to be admitted before it is acknowledged as deferred anyway;
   * within it an error is answered ephemerally in the first response. Well under Discord's 3 s.
   */
  ackDeadlineMs?: number;
}

/** Handles interactions; {@link InteractionHandler.idle} waits for the jobs it is showing. */
export interface InteractionHandler {
  handle(interaction: APIInteraction, respond: InitialResponder): Promise<void>;
  /** Resolves when every job started so far has been delivered. */
  idle(): Promise<void>;
}

const ephemeral = MessageFlags.Ephemeral;

/** Builds the handler shared by the gateway and the HTTP endpoint. */
export function createInteractionHandler(options: InteractionHandlerOptions): InteractionHandler {
  const { rest, config, service, commandSettings } = options;
  const logger = options.logger;
  const timing: DeliveryTiming = { ...defaultDeliveryTiming, ...options.timing };
  const timers = options.timers ?? realTimers;
  const ackDeadlineMs = options.ackDeadlineMs ?? 1500;
  const deliveries = new Set<Promise<void>>();

  const track = (delivery: JobDelivery): void => {
    const settled = delivery.settled;
    deliveries.add(settled);
    void settled.finally(() => deliveries.delete(settled));
  };

  const applicationIdOf = (interaction: APIInteraction): string => interaction.application_id || config.discordApplicationId || '';

  const newDelivery = (interaction: APIInteraction, requester: Requester): JobDelivery =>
    new JobDelivery({
      rest,
      service,
      logger,
      timing,
      timers,
      target: {
        applicationId: applicationIdOf(interaction),
        interactionToken: interaction.token,
        receivedAt: timers.now(),
        channelId: requester.channelId,
        userId: requester.userId,
      },
    });

  const followup = async (interaction: APIInteraction, content: string, flags: number): Promise<void> => {
    await rest.post(Routes.webhook(applicationIdOf(interaction), interaction.token), {
      body: { content: truncate(content), flags, allowed_mentions: { parse: [] } },
      auth: false,
    });
  };

  async function handleCommand(interaction: Extract<APIInteraction, { type: InteractionType.ApplicationCommand }>, respond: InitialResponder): Promise<void> {
    if (interaction.data.type !== ApplicationCommandType.ChatInput) {
      await respond(message('This kind of command is not supported.', true));
      return;
    }
    const requester = requesterOf(interaction, config.admins);
    const refusal = allowListRefusal(requester, config);
    if (refusal) {
      await respond(message(refusal, true));
      return;
    }
    const name = interaction.data.name;
    const delivery = newDelivery(interaction, requester);
    const replyPromise = runCommand(
      { service, requester, listener: delivery.listener, settings: commandSettings, deliveryOptions: deliveryOptionsOf(interaction) },
      name,
      flattenOptions(interaction.data.options),
    );
    const early = await withDeadline(replyPromise, ackDeadlineMs);
    if (early !== undefined) {
      if (early.kind === 'message') {
        await respond(message(early.text, early.ephemeral));
        return;
      }
      track(delivery);
      await respond({ type: InteractionResponseType.DeferredChannelMessageWithSource });
      delivery.openOriginal(early.text, early.ticket.job);
      return;
    }
    // Admission is slow: acknowledge now and answer when it is done.
    const deferredEphemeral = name !== 'imagine';
    await respond({ type: InteractionResponseType.DeferredChannelMessageWithSource, data: deferredEphemeral ? { flags: ephemeral } : {} });
    const reply = await replyPromise;
    if (reply.kind === 'job') {
      track(delivery);
      delivery.openOriginal(reply.text, reply.ticket.job);
      return;
    }
    const original = Routes.webhookMessage(applicationIdOf(interaction), interaction.token, '@original');
    if (reply.ephemeral && !deferredEphemeral) {
      // End "thinking…" first: Discord would turn the first followup into the public response.
      await rest.patch(original, { body: { content: '…', allowed_mentions: { parse: [] } }, auth: false });
      await rest.delete(original, { auth: false });
      await followup(interaction, reply.text, ephemeral);
    } else {
      await rest.patch(original, { body: { content: truncate(reply.text), allowed_mentions: { parse: [] } }, auth: false });
    }
  }

  async function handleButton(interaction: Extract<APIInteraction, { type: InteractionType.MessageComponent }>, respond: InitialResponder): Promise<void> {
    const requester = requesterOf(interaction, config.admins);
    const refusal = allowListRefusal(requester, config);
    if (refusal) {
      await respond(message(refusal, true));
      return;
    }
    // Acknowledged at once; the result arrives as a new message, as in Midjourney.
    await respond({ type: InteractionResponseType.DeferredMessageUpdate });
    const delivery = newDelivery(interaction, requester);
    const reply = await runButton(
      { service, requester, listener: delivery.listener, settings: commandSettings, deliveryOptions: deliveryOptionsOf(interaction) },
      interaction.data.custom_id,
    );
    if (reply.kind === 'message') {
      await followup(interaction, reply.text, reply.ephemeral ? ephemeral : 0);
      return;
    }
    track(delivery);
    delivery.openFollowup(reply.text, reply.ticket.job);
  }

  return {
    async handle(interaction, respond) {
      let responded = false;
      const once: InitialResponder = async (response) => {
        responded = true;
        await respond(response);
      };
      try {
        switch (interaction.type) {
          case InteractionType.Ping:
            await once({ type: InteractionResponseType.Pong });
            return;
          case InteractionType.ApplicationCommand:
            await handleCommand(interaction, once);
            return;
          case InteractionType.MessageComponent:
            await handleButton(interaction, once);
            return;
          case InteractionType.ApplicationCommandAutocomplete:
            await once({ type: InteractionResponseType.ApplicationCommandAutocompleteResult, data: { choices: [] } });
            return;
          default:
            await once(message('This kind of interaction is not supported.', true));
        }
      } catch (error) {
        logger.error({ err: serializeError(error), interactionType: interaction.type }, 'Discord interaction failed');
        const text = toUserMessage(error instanceof ImagineError ? error : new ImagineError(ErrorCode.Internal, 'interaction failed'));
        if (!responded) {
          await once(message(text, true)).catch(() => undefined);
        } else if (!isTokenError(error)) {
          await followup(interaction, text, ephemeral).catch(() => undefined);
        }
      }
    },
    async idle() {
      while (deliveries.size > 0) await Promise.all([...deliveries]);
    },
  };
}

/** An immediate message response, ephemeral or not. */
function message(text: string, isEphemeral: boolean): APIInteractionResponse {
  return {
    type: InteractionResponseType.ChannelMessageWithSource,
    data: { content: truncate(text), ...(isEphemeral ? { flags: ephemeral } : {}), allowed_mentions: { parse: [] } },
  };
}

/** The requester of an interaction: the member in a guild, the user in a DM. */
export function requesterOf(interaction: APIInteraction, admins: readonly string[] = []): Requester {
  const member = interaction.member;
  const user = member?.user ?? interaction.user;
  const userId = user?.id ?? 'unknown';
  const permissions = safeBigInt(member?.permissions);
  const adminBits = PermissionFlagsBits.Administrator | adminPermission;
  const requester: Requester = {
    platform: 'discord',
    userId,
    isAdmin: (permissions & adminBits) !== 0n || admins.includes(`discord:${userId}`),
  };
  const displayName = member?.nick ?? user?.global_name ?? user?.username;
  if (displayName) requester.displayName = displayName;
  const channelId = interaction.channel?.id ?? interaction.channel_id;
  if (channelId) requester.channelId = channelId;
  if (interaction.guild_id) requester.guildId = interaction.guild_id;
  return requester;
}

/** Why the configured allow-lists refuse this requester, or undefined. Admins and DMs pass. */
export function allowListRefusal(requester: Requester, config: Pick<Config, 'discordGuilds' | 'discordChannels'>): string | undefined {
  if (requester.isAdmin || requester.guildId === undefined) return undefined;
  if (config.discordGuilds.length > 0 && !config.discordGuilds.includes(requester.guildId)) {
    return 'This bot is not enabled in this server. Ask a server admin, or message the bot directly.';
  }
  if (config.discordChannels.length > 0 && (requester.channelId === undefined || !config.discordChannels.includes(requester.channelId))) {
    return 'The bot is not drawing in this channel. Please use one of the channels it is enabled in.';
  }
  return undefined;
}

/** Slash-command options as plain values; a subcommand's name becomes the `action` option. */
export function flattenOptions(options: APIApplicationCommandInteractionDataOption[] | undefined): CommandOptions {
  const result: CommandOptions = {};
  for (const option of options ?? []) {
    if (option.type === ApplicationCommandOptionType.Subcommand || option.type === ApplicationCommandOptionType.SubcommandGroup) {
      result.action ??= option.name;
      Object.assign(result, flattenOptions(option.options as APIApplicationCommandInteractionDataOption[] | undefined));
    } else if ('value' in option) {
      result[option.name] = option.value;
    }
  }
  return result;
}

function deliveryOptionsOf(interaction: APIInteraction): { uploadLimitBytes: number } {
  const limit = (interaction as { attachment_size_limit?: unknown }).attachment_size_limit;
  return { uploadLimitBytes: typeof limit === 'number' && limit > 0 ? limit : defaultAttachmentLimit };
}

async function withDeadline(promise: Promise<CommandReply>, ms: number): Promise<CommandReply | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function safeBigInt(value: string | undefined): bigint {
  try {
    return value ? BigInt(value) : 0n;
  } catch {
    return 0n;
  }
}

function truncate(text: string): string {
  return text.length <= 2000 ? text : `${text.slice(0, 1999)}…`;
}
