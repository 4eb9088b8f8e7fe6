/**
 * Block Kit for the Slack adapter: the buttons under a result (from commands/definitions.ts, so
 * they match Discord's) and the in-channel status line of a running job.
 */
import type { types as SlackTypes } from '@slack/bolt';
import type { ButtonSpec } from '../../commands/definitions.js';
import { escapeText } from '../../commands/messages.js';
import type { JobRecord } from '../../src/service/types.js';

type KnownBlock = SlackTypes.KnownBlock;

/** Slack's limit on action_id and value. */
export const maxActionIdLength = 255;

/** The prefix of every block_id the adapter makes; a row's index follows it. */
export const buttonBlockPrefix = 'imagine-buttons-';

/**
 * One actions block per row ([U1..U4], [V1..V4], [🔄]), as on Discord. Each button's action_id and
 * value are the same encoded id (version, action, job): action_ids must be unique within a
 * message, and the handler checks that the two agree.
 */
export function buttonBlocks(rows: ButtonSpec[][]): KnownBlock[] {
  return rows
    .filter((row) => row.length > 0)
    .map((row, index) => ({
      type: 'actions' as const,
      block_id: `${buttonBlockPrefix}${index}`,
      elements: row.map((button) => {
        if (button.customId.length > maxActionIdLength) throw new RangeError(`A button id is longer than Slack's ${maxActionIdLength} characters.`);
        return {
          type: 'button' as const,
          action_id: button.customId,
          value: button.customId,
          text: { type: 'plain_text' as const, text: button.label, emoji: true },
          ...(button.style === 'primary' ? { style: 'primary' as const } : {}),
        };
      }),
    }));
}

/** The message under a result: a short line and the buttons. */
export function resultButtonsMessage(job: JobRecord, rows: ButtonSpec[][]): { text: string; blocks: KnownBlock[] } {
  const hint = job.kind === 'upscale' ? 'Vary this image or 🔄 re-roll the prompt.' : 'U = upscale · V = variations · 🔄 = re-roll (pictures are numbered left to right, top to bottom).';
  return {
    text: `Buttons for ${escapeText(shortPrompt(job.parameters.prompt), 'mrkdwn')}`,
    blocks: [{ type: 'context', elements: [{ type: 'mrkdwn', text: hint }] }, ...buttonBlocks(rows)],
  };
}

/** What a job is, for its status line: "*a cat* — <@U1>", "Upscaling #2 of *a cat* — <@U1>". */
export function jobHeadline(job: JobRecord): string {
  const prompt = `*${escapeText(shortPrompt(job.parameters.prompt), 'mrkdwn')}*`;
  const who = /^[A-Za-z0-9_-]{1,40}$/.test(job.requester.userId) ? `<@${job.requester.userId}>` : escapeText(job.requester.displayName ?? 'someone', 'mrkdwn');
  const index = job.parent?.index ?? '?';
  switch (job.kind) {
    case 'upscale':
      return `Upscaling #${index} of ${prompt} — ${who}`;
    case 'variation':
      return `Variations (${job.strength === 'subtle' ? 'Subtle' : 'Strong'}) of #${index} of ${prompt} — ${who}`;
    case 'reroll':
      return `Re-rolling ${prompt} — ${who}`;
    default:
      return `${prompt} — ${who}`;
  }
}

function shortPrompt(prompt: string, max = 120): string {
  const points = Array.from(prompt);
  return points.length > max ? `${points.slice(0, max).join('')}…` : prompt;
}
