/**
 * What Slack sends an app: slash commands and block_actions payloads, signed the way Slack signs
 * them (`v0=` HMAC-SHA256 of `v0:<timestamp>:<body>` with the signing secret), for POSTing to
 * the HTTP receiver, or as plain payloads for Socket Mode envelopes.
 */
import { createHmac } from 'node:crypto';

/** How a request's signature is made: right, wrong, absent, or right but over five minutes old. */
export type SignatureKind = 'valid' | 'bad' | 'missing' | 'stale';

/** The signature headers Slack would send for `body` at `timestampSeconds`. */
export function signSlackRequest(signingSecret: string, body: string, timestampSeconds: number = Math.floor(Date.now() / 1000)): Record<string, string> {
  const signature = `v0=${createHmac('sha256', signingSecret).update(`v0:${timestampSeconds}:${body}`).digest('hex')}`;
  return { 'x-slack-signature': signature, 'x-slack-request-timestamp': String(timestampSeconds) };
}

/** The fields of a slash command invocation. */
export interface SlashCommandFields {
  command?: string;
  text: string;
  userId: string;
  userName?: string;
  channelId: string;
  teamId?: string;
  responseUrl?: string;
  triggerId?: string;
}

/** A slash command as Slack sends it (the same fields over HTTP and in a Socket Mode envelope). */
export function slashCommandPayload(fields: SlashCommandFields): Record<string, string> {
  return {
    token: 'deprecated-verification-token',
    team_id: fields.teamId ?? 'T0FAKE',
    team_domain: 'fake',
    channel_id: fields.channelId,
    channel_name: 'general',
    user_id: fields.userId,
    user_name: fields.userName ?? fields.userId.toLowerCase(),
    command: fields.command ?? '/imagine',
    text: fields.text,
    api_app_id: 'A0FAKE',
    is_enterprise_install: 'false',
    response_url: fields.responseUrl ?? 'https://hooks.slack.invalid/commands/T0FAKE/1/x',
    trigger_id: fields.triggerId ?? '1.2.3',
  };
}

/** The fields of a button press. */
export interface BlockActionFields {
  userId: string;
  userName?: string;
  channelId: string;
  teamId?: string;
  /** The message that carries the button. */
  messageTs: string;
  /** The thread the message is in, when it is in one. */
  threadTs?: string;
  actionId: string;
  value?: string;
  blockId?: string;
  responseUrl?: string;
}

/** A block_actions payload as Slack sends it. */
export function blockActionsPayload(fields: BlockActionFields): Record<string, unknown> {
  const teamId = fields.teamId ?? 'T0FAKE';
  return {
    type: 'block_actions',
    user: { id: fields.userId, username: fields.userName ?? fields.userId.toLowerCase(), name: fields.userName ?? fields.userId.toLowerCase(), team_id: teamId },
    api_app_id: 'A0FAKE',
    token: 'deprecated-verification-token',
    container: { type: 'message', message_ts: fields.messageTs, channel_id: fields.channelId, is_ephemeral: false, ...(fields.threadTs ? { thread_ts: fields.threadTs } : {}) },
    trigger_id: '1.2.3',
    team: { id: teamId, domain: 'fake' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: fields.channelId, name: 'general' },
    message: { type: 'message', user: 'U0BOT', ts: fields.messageTs, bot_id: 'B0BOT', text: 'buttons', ...(fields.threadTs ? { thread_ts: fields.threadTs } : {}) },
    state: { values: {} },
    response_url: fields.responseUrl ?? 'https://hooks.slack.invalid/actions/T0FAKE/1/x',
    actions: [
      {
        type: 'button',
        action_id: fields.actionId,
        block_id: fields.blockId ?? 'imagine-buttons-0',
        text: { type: 'plain_text', text: 'button', emoji: true },
        value: fields.value ?? fields.actionId,
        action_ts: `${Math.floor(Date.now() / 1000)}.000001`,
      },
    ],
  };
}

/** Form-encodes a slash command body. */
export function encodeSlashCommand(payload: Record<string, string>): string {
  return new URLSearchParams(payload).toString();
}

/** Form-encodes an interactive payload (`payload=<json>`). */
export function encodeInteractive(payload: Record<string, unknown>): string {
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** The answer of a receiver. */
export interface ReceiverResponse {
  status: number;
  body: string;
}

/** POSTs a form-encoded body to a receiver with the chosen kind of signature. */
export async function postSigned(url: string, body: string, signingSecret: string, kind: SignatureKind = 'valid'): Promise<ReceiverResponse> {
  const now = Math.floor(Date.now() / 1000);
  let headers: Record<string, string> = {};
  if (kind === 'valid') headers = signSlackRequest(signingSecret, body, now);
  if (kind === 'bad') headers = signSlackRequest(`${signingSecret}-wrong`, body, now);
  if (kind === 'stale') headers = signSlackRequest(signingSecret, body, now - 6 * 60);
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  return { status: response.status, body: await response.text() };
}
