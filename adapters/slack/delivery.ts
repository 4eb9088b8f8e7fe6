/**
 * How one job shows up in Slack: the {@link JobListener} closure the adapter hands the service.
 *
 * Ephemeral messages cannot be edited with chat.update, and a response_url allows only five
 * posts within 30 minutes, so live progress goes into a normal in-channel status message
 * (chat.postMessage, then chat.update at most once per `progressIntervalMs`). The result is
 * uploaded with files.uploadV2 into the channel or thread, followed by a message with the
 * buttons; nothing depends on a short-lived interaction token. Whatever fails is told to the
 * user ephemerally, never dropped.
 *
 * The status message is recorded as the job's message (role `status`), so that a bot process that
 * adopts the job after its own died or restarted (QUEUE=redis, {@link slackOrphanDelivery}) goes on
 * editing it; a bot that restarts gracefully first writes there that the result still comes.
 */
import type { types as SlackTypes, webApi } from '@slack/bolt';
import { buttonRowsFor } from '../../commands/definitions.js';
import { failedText, handedOverText, progressText, queuedText, resultCaption, retryingText } from '../../commands/messages.js';
import { ErrorCode, ImagineError, UserError, toUserMessage, type SerializedError } from '../../src/errors.js';
import type { Logger } from '../../src/logger.js';
import type { GenerationService, JobListener, JobOutput, JobRecord, OrphanDelivery } from '../../src/service/types.js';
import { buttonBlocks, jobHeadline, resultButtonsMessage } from './blocks.js';

type WebClient = webApi.WebClient;
type Block = SlackTypes.KnownBlock;

/** Where a job's messages go and who is told about problems. */
export interface SlackTarget {
  channelId: string;
  /** The thread the request came from; results go there too. */
  threadTs?: string;
  /** The user who asked (or pressed); ephemeral messages go to them. */
  userId: string;
  /** The request's response_url: a fallback for ephemeral messages when chat.postEphemeral fails. */
  responseUrl?: string;
  /** A status message already posted for this job (by a bot process that is gone), to edit rather than post anew. */
  statusTs?: string;
}

/** What every delivery shares. */
export interface SlackDeliveryContext {
  client: WebClient;
  service: Pick<GenerationService, 'attachMessage'>;
  logger: Logger;
  /** The least time between two progress edits of a status message. */
  progressIntervalMs: number;
  now: () => number;
  /** Whether a response_url may be POSTed to (only Slack's own hooks, or the configured API host). */
  isTrustedResponseUrl: (url: string) => boolean;
}

/** Slack errors that mean the bot cannot post in the channel at all. */
const closedChannelErrors = new Set(['not_in_channel', 'channel_not_found', 'is_archived', 'restricted_action', 'restricted_action_read_only_channel']);

/** The Slack error code inside a WebClient error, if there is one. */
export function slackErrorCode(error: unknown): string | undefined {
  const data = (error as { data?: { error?: unknown } } | undefined)?.data;
  return typeof data?.error === 'string' ? data.error : undefined;
}

/** Explains to a user why Slack refused a post or upload, as a user-facing error. */
export function deliveryError(error: unknown, what: string): ImagineError {
  const code = slackErrorCode(error);
  switch (code) {
    case 'not_in_channel':
    case 'channel_not_found':
      return new UserError(ErrorCode.Upload, `${what}, because I'm not a member of this channel. Invite me with /invite and try again.`);
    case 'is_archived':
      return new UserError(ErrorCode.Upload, `${what}, because this channel is archived.`);
    case 'restricted_action':
    case 'restricted_action_read_only_channel':
    case 'restricted_action_thread_only_channel':
      return new UserError(ErrorCode.Upload, `${what}, because this workspace does not let me post here.`);
    case 'file_uploads_disabled':
    case 'file_uploads_except_images_disabled':
      return new UserError(ErrorCode.Upload, `${what}, because file uploads are disabled in this workspace.`);
    case undefined:
      return new UserError(ErrorCode.Upload, `${what}: Slack did not accept it in time. Please try again.`);
    default:
      return new UserError(ErrorCode.Upload, `${what} (Slack said: ${code.replace(/[^a-z0-9_]/gi, '').slice(0, 60)}). Please try again.`);
  }
}

/**
 * Sends `text` to the target user only: chat.postEphemeral, or the response_url when that fails.
 * Returns false (and logs) when neither worked.
 */
export async function tellUser(context: SlackDeliveryContext, target: SlackTarget, text: string, blocks?: Block[]): Promise<boolean> {
  try {
    await context.client.chat.postEphemeral({
      channel: target.channelId,
      user: target.userId,
      text,
      ...(blocks ? { blocks } : {}),
      ...(target.threadTs ? { thread_ts: target.threadTs } : {}),
    });
    return true;
  } catch (error) {
    const url = target.responseUrl;
    if (url && context.isTrustedResponseUrl(url)) {
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ response_type: 'ephemeral', replace_original: false, text, ...(blocks ? { blocks } : {}) }),
          signal: AbortSignal.timeout(10_000),
        });
        if (response.ok) return true;
      } catch {
        // Logged below with the original error.
      }
    }
    context.logger.error({ err: error, channel: target.channelId, user: target.userId, slackError: slackErrorCode(error) }, 'could not send an ephemeral message on Slack');
    return false;
  }
}

/** The listener for one job: status message, upload, buttons, and ephemeral notices. */
export class SlackJobDelivery implements JobListener {
  private readonly target: SlackTarget;
  private readonly context: SlackDeliveryContext;
  private readonly gate: Promise<void>;
  private openGate: () => void = () => undefined;
  private statusTs: string | undefined;
  private statusText: string | undefined;
  private lastStatusAt = Number.NEGATIVE_INFINITY;
  /** Set once posting the status failed: no more tries for this job. */
  private statusBroken = false;
  private finished = false;
  private uploadProblem: ImagineError | undefined;
  /** Why the job was stopped early: the bot cannot post in the channel. */
  private unreachable: ImagineError | undefined;
  private readonly stopJob: ((job: JobRecord) => Promise<unknown>) | undefined;

  /**
   * @param stopJob cancels the job (as its requester) when the channel turns out to be closed to
   * the bot, so that no work is wasted on a result that could not be shown.
   */
  constructor(target: SlackTarget, context: SlackDeliveryContext, stopJob?: (job: JobRecord) => Promise<unknown>) {
    this.target = target;
    this.context = context;
    this.stopJob = stopJob;
    this.statusTs = target.statusTs;
    this.gate = new Promise<void>((resolve) => {
      this.openGate = resolve;
    });
  }

  /**
   * Lets job events through. Until then they wait, so that the user's "queued" reply always comes
   * before the status message, even when the service reports faster than Slack answers.
   */
  open(): void {
    this.openGate();
  }

  async queued(update: { job: JobRecord; position: number; etaMs: number }): Promise<void> {
    await this.gate;
    // Positions can change often when the queue moves fast; they share the progress throttle.
    await this.showStatus(update.job, queuedText(update.position, update.etaMs), false);
  }

  async started(update: { job: JobRecord; etaMs: number }): Promise<void> {
    await this.gate;
    await this.showStatus(update.job, progressText(0, update.etaMs), true);
  }

  async progress(update: { job: JobRecord; fraction: number; etaMs: number }): Promise<void> {
    await this.gate;
    await this.showStatus(update.job, progressText(update.fraction, update.etaMs), false);
  }

  async retrying(update: { job: JobRecord; attempt: number }): Promise<void> {
    await this.gate;
    await this.showStatus(update.job, retryingText(update.attempt), true);
  }

  /**
   * The bot process restarts and another takes the job over: the status message says the result
   * still comes (it is recorded, so the next bot goes on editing it), and this delivery is done.
   */
  async handedOver(update: { job: JobRecord }): Promise<void> {
    await this.gate;
    await this.showStatus(update.job, handedOverText(update.job.status === 'running'), true);
    this.finished = true;
  }

  /**
   * Uploads the file, then posts the buttons and records where they are. A failed upload is
   * thrown (after noting why), so the service counts it and calls {@link failed}, which tells the user.
   */
  async completed(output: JobOutput): Promise<void> {
    await this.gate;
    // completed() is only called for finished jobs, whatever status the snapshot was taken at.
    const job: JobRecord = { ...output.job, status: 'completed' };
    const { file } = output;
    const { client } = this.context;
    const thread = this.target.threadTs ? { thread_ts: this.target.threadTs } : {};
    try {
      await client.filesUploadV2({
        channel_id: this.target.channelId,
        ...thread,
        file: Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength),
        filename: file.name,
        title: Array.from(job.parameters.prompt).slice(0, 120).join(''),
        alt_text: Array.from(job.parameters.prompt).slice(0, 1000).join(''),
        initial_comment: resultCaption(job, { format: 'mrkdwn' }),
      });
    } catch (error) {
      this.context.logger.warn({ err: error, jobId: job.id, slackError: slackErrorCode(error) }, 'uploading a result to Slack failed');
      this.uploadProblem = deliveryError(error, 'The picture was made but could not be uploaded');
      throw this.uploadProblem;
    }
    this.finished = true;
    let buttonsTs: string | undefined;
    const rows = buttonRowsFor(job);
    if (rows.length > 0) {
      try {
        const message = resultButtonsMessage(job, rows);
        const posted = await client.chat.postMessage({ channel: this.target.channelId, ...thread, text: message.text, blocks: message.blocks });
        buttonsTs = posted.ts;
      } catch (error) {
        this.context.logger.warn({ err: error, jobId: job.id, slackError: slackErrorCode(error) }, 'posting the buttons of a result failed');
        await tellUser(this.context, this.target, toUserMessage(deliveryError(error, 'The picture is posted, but its buttons could not be')));
      }
    }
    try {
      await this.context.service.attachMessage(job.id, {
        platform: 'slack',
        channelId: this.target.channelId,
        ...(buttonsTs ? { messageId: buttonsTs } : {}),
        ...(this.target.threadTs ? { threadId: this.target.threadTs } : {}),
      });
    } catch (error) {
      // The buttons carry the job id, so they work without this reference.
      this.context.logger.warn({ err: error, jobId: job.id }, 'could not record where a result was posted');
    }
    await this.writeStatus(job, '✅ Done.');
  }

  async failed(update: { job: JobRecord; error: SerializedError }): Promise<void> {
    await this.gate;
    this.finished = true;
    const problem = this.unreachable ?? (update.error.code === ErrorCode.Upload ? this.uploadProblem : undefined);
    const text = problem ? `❌ ${toUserMessage(problem)}` : failedText(update.error);
    // A failed job offers 🔄, so trying again is one press away.
    const retry = buttonRowsFor({ ...update.job, status: update.job.status === 'cancelled' ? 'cancelled' : 'failed' });
    const blocks: Block[] = [{ type: 'section', text: { type: 'mrkdwn', text } }, ...buttonBlocks(retry)];
    await this.writeStatus(update.job, text);
    await tellUser(this.context, this.target, text, blocks);
  }

  private async showStatus(job: JobRecord, line: string, force: boolean): Promise<void> {
    if (this.finished) return;
    if (!force && this.statusTs !== undefined && this.context.now() - this.lastStatusAt < this.context.progressIntervalMs) return;
    await this.writeStatus(job, line);
  }

  /** Posts the status message, or edits it; a failure here never stops the job. */
  private async writeStatus(job: JobRecord, line: string): Promise<void> {
    if (this.statusBroken) return;
    const text = `${jobHeadline(job)}\n${line}`;
    if (text === this.statusText) return;
    const { client } = this.context;
    try {
      if (this.statusTs === undefined) {
        if (this.finished) return;
        const posted = await client.chat.postMessage({ channel: this.target.channelId, text, ...(this.target.threadTs ? { thread_ts: this.target.threadTs } : {}) });
        this.statusTs = posted.ts;
        if (posted.ts) await this.recordStatus(job, posted.ts);
      } else {
        await client.chat.update({ channel: this.target.channelId, ts: this.statusTs, text });
      }
      this.statusText = text;
      this.lastStatusAt = this.context.now();
    } catch (error) {
      this.statusBroken = true;
      const code = slackErrorCode(error);
      this.context.logger.warn({ err: error, jobId: job.id, slackError: code }, 'could not show the status of a job on Slack');
      if (this.statusTs === undefined && code !== undefined && closedChannelErrors.has(code) && this.stopJob && !this.finished) {
        this.unreachable = deliveryError(error, 'Your picture was not drawn');
        await this.stopJob(job).catch((stopError: unknown) => this.context.logger.warn({ err: stopError, jobId: job.id }, 'could not stop a job whose channel is closed to the bot'));
      }
    }
  }

  /** Records where the status message is, for a bot process that may have to take the job over. */
  private async recordStatus(job: JobRecord, ts: string): Promise<void> {
    try {
      await this.context.service.attachMessage(job.id, {
        platform: 'slack',
        role: 'status',
        channelId: this.target.channelId,
        messageId: ts,
        ...(this.target.threadTs ? { threadId: this.target.threadTs } : {}),
      });
    } catch (error) {
      // Only an adopting bot needs it; without it that bot posts a new status message.
      this.context.logger.debug({ err: error, jobId: job.id }, 'could not record the status message of a job');
    }
  }
}

/**
 * Shows Slack jobs whose bot process is gone (QUEUE=redis) with the bot token, as
 * {@link SlackJobDelivery} does: it goes on editing the recorded status message (or posts one in
 * the requester's channel), uploads the result and tells the requester about failures.
 * Undefined for a job with no channel.
 */
export function slackOrphanDelivery(context: SlackDeliveryContext): OrphanDelivery {
  return {
    platform: 'slack',
    listenerFor(job) {
      const message = job.message?.platform === 'slack' ? job.message : undefined;
      const channelId = message?.channelId ?? job.requester.channelId;
      if (!channelId) return undefined;
      const delivery = new SlackJobDelivery(
        {
          channelId,
          userId: job.requester.userId,
          ...(message?.threadId ? { threadTs: message.threadId } : {}),
          ...(message?.role === 'status' && message.messageId ? { statusTs: message.messageId } : {}),
        },
        context,
      );
      delivery.open();
      return delivery;
    },
  };
}
