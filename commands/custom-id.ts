/**
 * Button ids (Discord `custom_id`, Slack `action_id`): versioned, self-describing and validated, so
 * buttons keep working after a restart and a forged id is refused with `invalid_action`.
 *
 * Format, version 1 (at most 100 characters; job ids are URL-safe, at most 40 characters):
 * - `im1:u:<jobId>:<n>` upscale image n (1..4)
 * - `im1:v:<jobId>:<n>` vary image n with the user's default strength
 * - `im1:v:<jobId>:<n>:subtle` / `im1:v:<jobId>:<n>:strong` vary with that strength
 * - `im1:r:<jobId>` re-roll
 */
import { ErrorCode, UserError } from '../src/errors.js';
import type { VariationStrength } from '../src/engine/engine.js';

/** What a button does. */
export type ButtonAction =
  | { kind: 'upscale'; jobId: string; index: number }
  | {
      kind: 'vary';
      jobId: string;
      index: number;
      strength: VariationStrength;
      /** True when the button leaves the strength to the user's settings (`strength` is then the fallback). */
      strengthFromSettings?: boolean;
    }
  | { kind: 'reroll'; jobId: string };

/** The version prefix of ids made now. */
export const customIdVersion = 'im1';
/** Discord's limit, the tightest of the platforms. */
export const maxCustomIdLength = 100;
/** Job ids are URL-safe and short. */
export const jobIdPattern = /^[A-Za-z0-9_-]{1,40}$/;
/** Images in one job. */
export const maxImageIndex = 4;

/** The strength a variation button uses when neither the button nor the user says. */
export const defaultVariationStrength: VariationStrength = 'strong';

/** Encodes a button action. Throws {@link UserError} (`invalid_action`) for an action that cannot be a button. */
export function encodeButton(action: ButtonAction): string {
  if (!action || typeof action !== 'object' || typeof action.jobId !== 'string' || !jobIdPattern.test(action.jobId)) {
    throw invalid();
  }
  let id: string;
  switch (action.kind) {
    case 'upscale':
      checkIndex(action.index);
      id = `${customIdVersion}:u:${action.jobId}:${action.index}`;
      break;
    case 'vary':
      checkIndex(action.index);
      if (action.strength !== 'subtle' && action.strength !== 'strong') throw invalid();
      id = action.strengthFromSettings
        ? `${customIdVersion}:v:${action.jobId}:${action.index}`
        : `${customIdVersion}:v:${action.jobId}:${action.index}:${action.strength}`;
      break;
    case 'reroll':
      id = `${customIdVersion}:r:${action.jobId}`;
      break;
    default:
      throw invalid();
  }
  return id;
}

const idPattern = /^im1:(u|v|r):([A-Za-z0-9_-]{1,40})(?::([1-9]))?(?::(subtle|strong))?$/;

/** Decodes a button id. Anything that is not an id this version made throws {@link UserError} `invalid_action`. */
export function decodeButton(id: string): ButtonAction {
  if (typeof id !== 'string' || id.length > maxCustomIdLength) throw invalid();
  if (/^im\d+:/.test(id) && !id.startsWith(`${customIdVersion}:`)) {
    throw new UserError(ErrorCode.InvalidAction, 'This button comes from a different version of the bot and no longer works. Please run /imagine again.', { field: 'button' });
  }
  const match = idPattern.exec(id);
  if (!match) throw invalid();
  const [, kind, jobId, indexText, strength] = match;
  const index = indexText === undefined ? undefined : Number(indexText);
  switch (kind) {
    case 'u':
      if (index === undefined || strength !== undefined) throw invalid();
      checkIndex(index);
      return { kind: 'upscale', jobId: jobId!, index };
    case 'v':
      if (index === undefined) throw invalid();
      checkIndex(index);
      return strength === undefined
        ? { kind: 'vary', jobId: jobId!, index, strength: defaultVariationStrength, strengthFromSettings: true }
        : { kind: 'vary', jobId: jobId!, index, strength: strength as VariationStrength };
    case 'r':
      if (index !== undefined || strength !== undefined) throw invalid();
      return { kind: 'reroll', jobId: jobId! };
    default:
      throw invalid();
  }
}

/** True when `id` looks like one of this bot's button ids (any version), so adapters can route it here. */
export function isImagineButtonId(id: string): boolean {
  return typeof id === 'string' && /^im\d+:/.test(id);
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 1 || index > maxImageIndex) throw invalid();
}

function invalid(): UserError {
  return new UserError(ErrorCode.InvalidAction, "This button isn't valid (it may be damaged or from another bot). Please run /imagine again.", { field: 'button' });
}
