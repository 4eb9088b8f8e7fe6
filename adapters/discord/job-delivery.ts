/**
 * Shows one job on Discord: the {@link JobListener} an interaction hands the service. It edits a
 * status message in place (the deferred original response of `/imagine`, or a followup it posts
 * for a button press) with the queue position and progress, at most once per progress interval,
 * then puts the result there. When the interaction token has expired (Discord gives 15 minutes)
 * or stops working, the result goes to the channel as a message sent with the bot token.
 * Failures end as an ephemeral message to whoever asked. Every REST call runs in one queue per
 * job, so edits never overtake each other.
 *
 * {@link discordOrphanDelivery} shows jobs whose bot process is gone (QUEUE=redis) through the same
 * class with no interaction at all: the result, or the failure, goes to the channel with the bot token.
 * When this bot process restarts gracefully, the status message says the result still comes.
 */
import { DiscordAPIError, MessageFlags, Routes, type REST, type RESTPostAPIChannelMessageResult } from 'discord.js';
import { buttonRowsFor } from '../../commands/definitions.js';
import { escapeText, failedText, handedOverText, progressText, queuedText, resultCaption, retryingText } from '../../commands/messages.js';
import { ErrorCode, ImagineError, serializeError, type SerializedError } from '../../src/errors.js';
import type { Logger } from '../../src/logger.js';
import type { GenerationService, JobListener, JobOutput, JobRecord, MessageReference, OrphanDelivery } from '../../src/service/types.js';
import { actionRows } from './components.js';

/** Time sources, injectable so that tests control them. */
export interface DeliveryTimers {
  /** Wall-clock milliseconds; decides whether an interaction token is still usable. */
  now(): number;
  /** Monotonic milliseconds for throttling edits. */
  monotonic(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Real time. */
export const realTimers: DeliveryTimers = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** How a delivery paces itself. */
export interface DeliveryTiming {
  /** Least time between two progress edits of one message. */
  progressIntervalMs: number;
  /** After this long an interaction token is no longer used (Discord's limit is 15 minutes). */
  tokenLifetimeMs: number;
}

export const defaultDeliveryTiming: DeliveryTiming = { progressIntervalMs: 1500, tokenLifetimeMs: 14 * 60 * 1000 };

/** Where and for whom a job is shown. */
export interface DeliveryTarget {
  applicationId: string;
  /** Absent for a job adopted from a bot process that is gone: everything then goes through the bot token. */
  interactionToken?: string;
  /** When the interaction arrived, by {@link DeliveryTimers.now}. */
  receivedAt: number;
  channelId: string | undefined;
  userId: string;
}

export interface JobDeliveryOptions {
  rest: REST;
  service: Pick<GenerationService, 'attachMessage'>;
  logger: Logger;
  target: DeliveryTarget;
  timing?: DeliveryTiming;
  timers?: DeliveryTimers;
}

type StatusMessage = { kind: 'original' } | { kind: 'followup'; id: string };

/** Phases only move forward: a late "queued" never overwrites progress, nothing overwrites the result. */
const Phase = { None: 0, Queued: 1, Running: 2, Final: 3 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/** Error codes that mean the interaction token can no longer be used. */
const tokenErrorCodes = new Set([50027, 10015, 10062, 10008]);

/** True when a REST error says the interaction token (or its message) is gone. */
export function isTokenError(error: unknown): boolean {
  return error instanceof DiscordAPIError && (tokenErrorCodes.has(Number(error.code)) || error.status === 401);
}

/** One job's presence on Discord. */
export class JobDelivery {
  readonly listener: JobListener;
  readonly #rest: REST;
  readonly #service: Pick<GenerationService, 'attachMessage'>;
  readonly #logger: Logger;
  readonly #target: DeliveryTarget;
  readonly #timing: DeliveryTiming;
  readonly #timers: DeliveryTimers;
  /** Nothing is sent before the interaction was acknowledged and the handler chose where to show the job. */
  #queue: Promise<void>;
  #open: () => void = () => undefined;
  #status: StatusMessage | undefined;
  #latest: { text: string; phase: Phase } = { text: '', phase: Phase.None };
  #rendered: string | undefined;
  /** What the job is and who asked, shown above its status. */
  #header: string | undefined;
  #lastRenderAt = Number.NEGATIVE_INFINITY;
  #timer: unknown;
  #tokenDead = false;
  #settled: Promise<void>;
  #settle: () => void = () => undefined;
  /** The message that shows the result, once delivered. */
  result: MessageReference | undefined;
  /** Edits made to the status message, for tests and logs. */
  edits = 0;

  constructor(options: JobDeliveryOptions) {
    this.#rest = options.rest;
    this.#service = options.service;
    this.#logger = options.logger;
    this.#target = options.target;
    this.#timing = options.timing ?? defaultDeliveryTiming;
    this.#timers = options.timers ?? realTimers;
    this.#settled = new Promise<void>((resolve) => (this.#settle = resolve));
    this.#queue = new Promise<void>((resolve) => (this.#open = resolve));
    this.listener = {
      queued: ({ position, etaMs }) => this.note(queuedText(position, etaMs), Phase.Queued),
      started: ({ etaMs }) => this.note(progressText(0, etaMs), Phase.Running),
      progress: ({ fraction, etaMs }) => this.note(progressText(fraction, etaMs), Phase.Running),
      retrying: ({ attempt }) => this.note(retryingText(attempt), Phase.Running, true),
      completed: (output) => this.complete(output),
      failed: ({ job, error }) => this.fail(job, error),
      handedOver: ({ job }) => this.handOver(job),
    };
  }

  /** Resolves once the job's result or failure has been shown (or could not be). */
  get settled(): Promise<void> {
    return this.#settled;
  }

  /** Shows the job in the interaction's original response (already acknowledged as deferred). */
  openOriginal(text: string, job?: JobRecord): void {
    if (job) this.#header = statusHeader(job, this.#target.userId);
    this.note(text, Phase.Queued);
    this.#status = { kind: 'original' };
    this.#open();
    this.#render();
  }

  /**
   * Starts a delivery that has no interaction (a job adopted from a bot process that is gone):
   * progress is not shown, the result or failure is posted to the channel with the bot token.
   */
  openWithoutInteraction(): void {
    this.#open();
  }

  /** Posts a new followup message with the job's status and keeps editing that one. */
  openFollowup(text: string, job?: JobRecord): void {
    if (job) this.#header = statusHeader(job, this.#target.userId);
    this.note(text, Phase.Queued);
    this.#open();
    this.#enqueue(async () => {
      // Already finished: the result or failure went out as its own followup.
      if (this.#latest.phase === Phase.Final) return;
      const content = this.#content();
      let message: RESTPostAPIChannelMessageResult;
      try {
        message = (await this.#rest.post(this.#webhookPath(), {
          body: { content, allowed_mentions: { parse: [] } },
          query: new URLSearchParams({ wait: 'true' }),
          auth: false,
        })) as RESTPostAPIChannelMessageResult;
      } catch (error) {
        // Without a status message the result still arrives, as a channel message.
        if (isTokenError(error)) this.#tokenDead = true;
        throw error;
      }
      this.#status = { kind: 'followup', id: message.id };
      this.#rendered = content;
      this.#lastRenderAt = this.#timers.monotonic();
    });
  }

  /** Records a new status text and schedules an edit, throttled to one per progress interval. */
  note(text: string, phase: Phase, immediate = false): void {
    if (phase < this.#latest.phase || this.#latest.phase === Phase.Final) return;
    this.#latest = { text, phase };
    if (this.#status === undefined) return;
    const wait = this.#lastRenderAt + this.#timing.progressIntervalMs - this.#timers.monotonic();
    if (immediate || wait <= 0) {
      this.#render();
    } else if (this.#timer === undefined) {
      this.#timer = this.#timers.setTimeout(() => {
        this.#timer = undefined;
        this.#render();
      }, wait);
    }
  }

  /** Puts the result in the status message, or in the channel when the token can no longer be used. */
  complete(output: JobOutput): Promise<void> {
    this.#finalise();
    const { job, file } = output;
    const caption = truncate(resultCaption(job, { format: 'markdown', mention: `<@${this.#target.userId}>` }));
    const components = actionRows(buttonRowsFor(job));
    const upload = { name: file.name, data: Buffer.from(file.data), contentType: file.contentType };
    const body = { content: caption, components, attachments: [{ id: 0, filename: file.name }] };
    return this.#enqueue(async () => {
      try {
        let reference = await this.#viaInteraction(async (path) => {
          const options = { body: { ...body, allowed_mentions: { parse: [] } }, files: [upload], auth: false };
          const message = (await (path === undefined ? this.#rest.post(this.#webhookPath(), options) : this.#rest.patch(path, options))) as RESTPostAPIChannelMessageResult;
          return { platform: 'discord', channelId: message.channel_id, messageId: message.id };
        });
        if (!reference) {
          const channelId = this.#requireChannel();
          const message = (await this.#rest.post(Routes.channelMessages(channelId), {
            body: { ...body, allowed_mentions: { users: [this.#target.userId] } },
            files: [upload],
          })) as RESTPostAPIChannelMessageResult;
          reference = { platform: 'discord', channelId: message.channel_id, messageId: message.id, via: 'channel' };
        }
        this.result = reference;
        await this.#service.attachMessage(job.id, reference).catch((error: unknown) => this.#logger.warn({ err: serializeError(error), jobId: job.id }, 'could not record the result message'));
      } catch (error) {
        this.#logger.error({ err: serializeError(error), jobId: job.id }, 'could not deliver a result to Discord');
        await this.#failNow(job, new ImagineError(ErrorCode.Upload, 'The result could not be posted to Discord.').toJSON());
      } finally {
        this.#settle();
      }
    });
  }

  /**
   * The bot process restarts and another posts the result (as a channel message): the status
   * message says so, once, and nothing changes it afterwards. Without a usable interaction token
   * there is no status message to edit, and the user learns of the job from its result.
   */
  handOver(job: JobRecord): Promise<void> {
    this.#finalise();
    this.#latest = { text: handedOverText(job.status === 'running'), phase: Phase.Final };
    return this.#enqueue(async () => {
      try {
        const path = this.#tokenUsable() ? this.#statusPath() : undefined;
        const content = this.#content();
        if (path === undefined || content === this.#rendered) return;
        this.#rendered = content;
        await this.#rest.patch(path, { body: { content, allowed_mentions: { parse: [] } }, auth: false });
        this.edits += 1;
      } catch (error) {
        this.#logger.warn({ err: serializeError(error), jobId: job.id }, 'could not tell a Discord user that the bot restarts');
      } finally {
        this.#settle();
      }
    });
  }

  /** Replaces the public status message with an ephemeral note to whoever asked. */
  fail(job: JobRecord, error: SerializedError): Promise<void> {
    this.#finalise();
    return this.#enqueue(async () => {
      try {
        await this.#failNow(job, error);
      } finally {
        this.#settle();
      }
    });
  }

  async #failNow(job: JobRecord, error: SerializedError): Promise<void> {
    const content = truncate(failedText(error));
    const components = actionRows(buttonRowsFor(job));
    try {
      const shown = await this.#viaInteraction(async (path) => {
        // Discord turns the first followup after a deferred response into that response (public
        // here); an edit first ends the "thinking…" state so that the followup stays ephemeral.
        if (path !== undefined) {
          if (this.#rendered === undefined) await this.#rest.patch(path, { body: { content, allowed_mentions: { parse: [] } }, auth: false });
          // Deleting means the public "Generating…" message never stays half-done.
          await this.#rest.delete(path, { auth: false }).catch((deleteError: unknown) => {
            if (!isTokenError(deleteError)) throw deleteError;
          });
        }
        await this.#rest.post(this.#webhookPath(), {
          body: { content, components, flags: MessageFlags.Ephemeral, allowed_mentions: { parse: [] } },
          auth: false,
        });
        return { platform: 'discord' };
      });
      if (!shown) {
        await this.#rest.post(Routes.channelMessages(this.#requireChannel()), {
          body: { content: truncate(`<@${this.#target.userId}> ${content}`), components, allowed_mentions: { users: [this.#target.userId] } },
        });
      }
    } catch (deliveryError) {
      this.#logger.error({ err: serializeError(deliveryError), jobId: job.id }, 'could not tell a Discord user that a job failed');
    }
  }

  /**
   * Runs `action` against the status message (undefined when there is none: then a new followup)
   * while the interaction token is usable. Returns
   * undefined when the token is (or turns out to be) unusable, so the caller uses the channel.
   */
  async #viaInteraction(action: (statusPath: `/${string}` | undefined) => Promise<MessageReference>): Promise<MessageReference | undefined> {
    if (!this.#tokenUsable()) return undefined;
    const path = this.#statusPath();
    try {
      return await action(path);
    } catch (error) {
      if (!isTokenError(error)) throw error;
      this.#tokenDead = true;
      this.#logger.info({ code: (error as DiscordAPIError).code }, 'interaction token no longer usable; using the channel');
      return undefined;
    }
  }

  #render(): void {
    this.#enqueue(async () => {
      if (this.#latest.phase === Phase.Final || !this.#tokenUsable()) return;
      const path = this.#statusPath();
      const content = this.#content();
      if (path === undefined || content === this.#rendered) return;
      this.#lastRenderAt = this.#timers.monotonic();
      this.#rendered = content;
      try {
        await this.#rest.patch(path, { body: { content, allowed_mentions: { parse: [] } }, auth: false });
        this.edits += 1;
      } catch (error) {
        if (isTokenError(error)) this.#tokenDead = true;
        else this.#logger.warn({ err: serializeError(error) }, 'could not edit a Discord status message');
      }
    });
  }

  #content(): string {
    return truncate(this.#header ? `${this.#header}\n${this.#latest.text}` : this.#latest.text);
  }

  #finalise(): void {
    this.#latest = { ...this.#latest, phase: Phase.Final };
    if (this.#timer !== undefined) {
      this.#timers.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #tokenUsable(): boolean {
    return this.#target.interactionToken !== undefined && !this.#tokenDead && this.#timers.now() - this.#target.receivedAt < this.#timing.tokenLifetimeMs;
  }

  #statusPath(): `/${string}` | undefined {
    if (!this.#status) return undefined;
    const messageId = this.#status.kind === 'original' ? '@original' : this.#status.id;
    return Routes.webhookMessage(this.#target.applicationId, this.#token(), messageId);
  }

  #webhookPath(): `/${string}` {
    return Routes.webhook(this.#target.applicationId, this.#token());
  }

  /** Only called while {@link #tokenUsable} holds. */
  #token(): string {
    if (this.#target.interactionToken === undefined) throw new ImagineError(ErrorCode.Internal, 'This delivery has no interaction token.');
    return this.#target.interactionToken;
  }

  #requireChannel(): string {
    if (!this.#target.channelId) throw new ImagineError(ErrorCode.Upload, 'The interaction named no channel to post the result in.');
    return this.#target.channelId;
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(task).catch((error: unknown) => {
      this.#logger.error({ err: serializeError(error) }, 'Discord delivery step failed');
    });
    this.#queue = next;
    return next;
  }
}

/** What {@link discordOrphanDelivery} needs: the bot's REST client and where to record result messages. */
export interface OrphanDeliveryOptions {
  rest: REST;
  service: Pick<GenerationService, 'attachMessage'>;
  logger: Logger;
  timers?: DeliveryTimers;
}

/**
 * Shows Discord jobs whose bot process is gone (QUEUE=redis): the interaction that asked died with
 * that process, so the result (or failure) is posted to the requester's channel with the bot
 * token, mentioning them, and recorded as the job's message. Undefined for a job with no channel.
 */
export function discordOrphanDelivery(options: OrphanDeliveryOptions): OrphanDelivery {
  return {
    platform: 'discord',
    listenerFor(job) {
      const message = job.message?.platform === 'discord' ? job.message : undefined;
      const channelId = message?.channelId ?? job.requester.channelId;
      if (!channelId) return undefined;
      const delivery = new JobDelivery({
        rest: options.rest,
        service: options.service,
        logger: options.logger,
        ...(options.timers ? { timers: options.timers } : {}),
        target: { applicationId: '', receivedAt: 0, channelId, userId: job.requester.userId },
      });
      delivery.openWithoutInteraction();
      return delivery.listener;
    },
  };
}

/** "**a red cube** — Upscaling image #1 — <@123>": what a status message is about. */
export function statusHeader(job: JobRecord, userId: string): string {
  const prompt = escapeText(job.parameters.prompt.length > 200 ? `${job.parameters.prompt.slice(0, 199)}…` : job.parameters.prompt);
  const index = job.parent?.index ?? '?';
  const what =
    job.kind === 'upscale'
      ? `Upscaling image #${index}`
      : job.kind === 'variation'
        ? `Variations (${job.strength === 'subtle' ? 'Subtle' : 'Strong'}) of image #${index}`
        : job.kind === 'reroll'
          ? 'Re-rolling'
          : undefined;
  return [`**${prompt}**`, what, `<@${userId}>`].filter(Boolean).join(' — ');
}

/** Discord refuses message content over 2000 characters. */
function truncate(text: string): string {
  return text.length <= 2000 ? text : `${text.slice(0, 1999)}…`;
}
