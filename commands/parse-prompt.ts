/**
 * Parses an `imagine` prompt with Midjourney-style inline flags into {@link ImagineParameters}.
 *
 * Rules (documented in the README):
 * - The prompt text is everything before the first flag; flags follow it. `--` starts a flag, and
 *   so do `—` and `–` (phones autocorrect `--` into a dash) when they name a known flag.
 * - `--no` takes every word up to the next flag; every other flag takes exactly one value, given as
 *   `--seed 42` or `--seed=42`. Flag names are case-insensitive.
 * - Lengths are counted in Unicode code points (an emoji such as 👍 is one, a ZWJ family emoji is
 *   several): the prompt and the negative prompt may have at most {@link maxPromptLength} each.
 * - Platform-native options (a Discord slash option, say) fill the same fields. When a field is
 *   given both inline and as an option with different values, the request is refused with
 *   `flag_repeated` — neither silently wins; the same value given twice is accepted.
 */
import { randomInt } from 'node:crypto';
import { ConfigError, ErrorCode, UserError } from '../src/errors.js';
import { standardAspectRatios } from '../src/engine/engine.js';
import type { EngineCapabilities } from '../src/engine/engine.js';
import type { ImagineParameters } from '../src/service/types.js';

/** The most code points a prompt (and, separately, a negative prompt) may have. */
export const maxPromptLength = 400;
/** Input longer than this (in code points) is refused before parsing. */
export const maxInputLength = 4000;
/** The largest seed: seeds are unsigned 32-bit integers. */
export const maxSeed = 4294967295;

/** Values given as platform-native options rather than inline flags. */
export interface PromptOptions {
  aspectRatio?: string | undefined;
  seed?: number | string | undefined;
  negativePrompt?: string | undefined;
  chaos?: number | string | undefined;
  steps?: number | string | undefined;
  guidance?: number | string | undefined;
}

/** Numeric limits that steps and guidance are checked against (the engine's). */
export type PromptLimits = EngineCapabilities['limits'];

/** What the parser needs to know besides the text. Every field is optional. */
export interface PromptContext {
  /** The engine's aspect ratios (the keys of `capabilities.sizes`); the standard seven when absent. */
  aspectRatios?: readonly string[];
  /** The engine's step and guidance limits; without them steps must be 1..1000 and guidance 0..100. */
  limits?: PromptLimits;
  /** `config.blockedWords`: whole words (case-insensitive) or `/regular expressions/flags`. */
  blockedWords?: readonly string[];
  /** The user's defaults (from their settings), used when the prompt does not say. */
  defaults?: { aspectRatio?: string | undefined };
  /** Platform-native options for the same fields. */
  options?: PromptOptions;
  /** Where random seeds come from; a cryptographic source by default. */
  randomSeed?: () => number;
}

/** Builds a {@link PromptContext} from an engine's capabilities and the configuration. */
export function promptContextFor(capabilities: Pick<EngineCapabilities, 'sizes' | 'limits'> | undefined, extras: Omit<PromptContext, 'aspectRatios' | 'limits'> = {}): PromptContext {
  return {
    ...extras,
    ...(capabilities ? { aspectRatios: Object.keys(capabilities.sizes), limits: capabilities.limits } : {}),
  };
}

type FlagField = 'aspectRatio' | 'seed' | 'negativePrompt' | 'chaos' | 'steps' | 'guidance';

interface FlagDefinition {
  field: FlagField;
  /** The canonical name, shown in messages. */
  name: string;
  aliases: string[];
  /** `--no` takes several words. */
  multiWord: boolean;
  example: string;
  /** Words for the option in messages, e.g. "the aspect ratio". */
  noun: string;
}

/** Every inline flag, with its aliases. */
export const flagDefinitions: readonly FlagDefinition[] = [
  { field: 'aspectRatio', name: 'ar', aliases: ['aspect'], multiWord: false, example: '--ar 16:9', noun: 'aspect ratio' },
  { field: 'seed', name: 'seed', aliases: [], multiWord: false, example: '--seed 42', noun: 'seed' },
  { field: 'negativePrompt', name: 'no', aliases: [], multiWord: true, example: '--no text, watermark', noun: 'negative prompt' },
  { field: 'chaos', name: 'chaos', aliases: ['c'], multiWord: false, example: '--chaos 50', noun: 'chaos' },
  { field: 'steps', name: 'steps', aliases: [], multiWord: false, example: '--steps 30', noun: 'steps' },
  { field: 'guidance', name: 'guidance', aliases: ['cfg'], multiWord: false, example: '--guidance 7.5', noun: 'guidance' },
];

const flagByName = new Map<string, FlagDefinition>();
for (const flag of flagDefinitions) for (const name of [flag.name, ...flag.aliases]) flagByName.set(name, flag);

const fallbackLimits: PromptLimits = { minSteps: 1, maxSteps: 1000, minGuidance: 0, maxGuidance: 100 };

/** A whitespace-separated word that starts a flag: `--name`, `—name`, `–name`, optionally `=value`. */
const flagPattern = /^(--|[\u2014\u2013]-?)([\p{L}\p{N}][\p{L}\p{N}_-]*)(?:=(.*))?$/su;

/**
 * Parses `input` (the prompt with inline flags) and merges `context.options`. Throws
 * {@link UserError} with a message for the user on any problem.
 */
export function parseImaginePrompt(input: string, context: PromptContext = {}): ImagineParameters {
  const source = toWellFormed(typeof input === 'string' ? input : '');
  if (codePointLength(source) > maxInputLength) {
    throw new UserError(ErrorCode.PromptTooLong, `That is too long: a prompt may have at most ${maxPromptLength} characters.`, { field: 'prompt' });
  }
  // Control characters count as spaces, so a pasted tab or newline cannot glue a flag to a word.
  const words = source.split(/[\s\p{Cc}]+/u).filter((word) => word !== '');

  const promptWords: string[] = [];
  const inline = new Map<FlagField, { value: string; written: string }>();
  let current: { flag: FlagDefinition; written: string; values: string[] } | undefined;

  const finish = (): void => {
    if (!current) return;
    const { flag, written, values } = current;
    if (values.length === 0) {
      throw new UserError(ErrorCode.FlagInvalid, `\`${written}\` needs a value, for example \`${flag.example}\`.`, { field: flag.name });
    }
    if (!flag.multiWord && values.length > 1) {
      throw new UserError(ErrorCode.FlagInvalid, `\`${written}\` takes one value but got "${shorten(values.join(' '))}". Put the prompt text before the flags, for example \`a red fox ${flag.example}\`.`, { field: flag.name });
    }
    inline.set(flag.field, { value: values.join(' '), written });
    current = undefined;
  };

  for (const word of words) {
    const match = flagPattern.exec(word);
    const prefix = match?.[1];
    const name = match?.[2]?.toLowerCase();
    const isDashFlag = prefix !== undefined && prefix !== '--';
    // A dash before a word that is no flag is prose ("cats —especially black ones") until flags begin.
    const startsFlag = match !== null && name !== undefined && (!isDashFlag || flagByName.has(name) || current !== undefined);
    if (!startsFlag) {
      if (current) current.values.push(word);
      else promptWords.push(word);
      continue;
    }
    finish();
    const written = `--${name}`;
    const flag = flagByName.get(name!);
    if (!flag) throw unknownFlag(name!);
    if (inline.has(flag.field)) {
      throw new UserError(ErrorCode.FlagRepeated, `\`--${flag.name}\` is given twice; keep only one.`, { field: flag.name });
    }
    current = { flag, written, values: [] };
    const attached = match![3];
    if (attached !== undefined && attached !== '') current.values.push(attached);
  }
  finish();

  const prompt = promptWords.join(' ');
  if (isBlank(prompt)) {
    throw new UserError(ErrorCode.PromptEmpty, 'Please describe the picture: the prompt is empty (flags such as `--ar 16:9` go after the description).', { field: 'prompt' });
  }
  const length = codePointLength(prompt);
  if (length > maxPromptLength) {
    throw new UserError(ErrorCode.PromptTooLong, `The prompt has ${length} characters; at most ${maxPromptLength} are allowed. Please shorten it.`, { field: 'prompt' });
  }
  if (context.blockedWords && context.blockedWords.length > 0 && compileBlockList(context.blockedWords).matches(prompt)) {
    throw new UserError(ErrorCode.PromptBlocked, "This prompt contains a word or phrase that isn't allowed here. Please rephrase it.", { field: 'prompt' });
  }

  const merged = mergeOptions(inline, context.options ?? {});
  const limits = context.limits ?? fallbackLimits;
  const aspectRatios = context.aspectRatios && context.aspectRatios.length > 0 ? context.aspectRatios : standardAspectRatios;

  const parameters: ImagineParameters = {
    prompt,
    aspectRatio: '1:1',
    seed: 0,
    chaos: 0,
  };
  const ratio = merged.get('aspectRatio');
  if (ratio !== undefined) parameters.aspectRatio = parseAspectRatio(ratio, aspectRatios);
  else if (context.defaults?.aspectRatio && aspectRatios.includes(context.defaults.aspectRatio)) parameters.aspectRatio = context.defaults.aspectRatio;
  else if (!aspectRatios.includes('1:1') && aspectRatios[0]) parameters.aspectRatio = aspectRatios[0];

  const seed = merged.get('seed');
  parameters.seed = seed === undefined ? (context.randomSeed ?? randomSeed)() : parseInteger(seed, 'seed', 0, maxSeed);

  const chaos = merged.get('chaos');
  if (chaos !== undefined) parameters.chaos = parseInteger(chaos, 'chaos', 0, 100);
  const steps = merged.get('steps');
  if (steps !== undefined) parameters.steps = parseInteger(steps, 'steps', limits.minSteps, limits.maxSteps);
  const guidance = merged.get('guidance');
  if (guidance !== undefined) parameters.guidance = parseDecimal(guidance, 'guidance', limits.minGuidance, limits.maxGuidance);

  const negative = merged.get('negativePrompt');
  if (negative !== undefined) {
    const text = negative.split(/[\s\p{Cc}]+/u).filter(Boolean).join(' ');
    const negativeLength = codePointLength(text);
    if (negativeLength > maxPromptLength) {
      throw new UserError(ErrorCode.PromptTooLong, `The negative prompt (\`--no\`) has ${negativeLength} characters; at most ${maxPromptLength} are allowed.`, { field: 'no' });
    }
    if (!isBlank(text)) parameters.negativePrompt = text;
  }
  return parameters;
}

/** A cryptographically random seed in 0..{@link maxSeed}. */
export function randomSeed(): number {
  return randomInt(0, maxSeed + 1);
}

/** Counts Unicode code points (the unit of the prompt length limit). */
export function codePointLength(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function mergeOptions(inline: Map<FlagField, { value: string; written: string }>, options: PromptOptions): Map<FlagField, string> {
  const merged = new Map<FlagField, string>();
  for (const [field, entry] of inline) merged.set(field, entry.value);
  for (const flag of flagDefinitions) {
    const raw = options[flag.field];
    if (raw === undefined || raw === null || (typeof raw === 'string' && raw.trim() === '')) continue;
    const value = toWellFormed(String(raw)).trim();
    const given = inline.get(flag.field);
    if (given !== undefined) {
      if (normalizeValue(given.value) === normalizeValue(value)) continue;
      throw new UserError(ErrorCode.FlagRepeated, `The ${flag.noun} is given twice: \`--${flag.name} ${shorten(given.value)}\` in the prompt and ${shorten(value)} as an option. Keep only one.`, { field: flag.name });
    }
    merged.set(flag.field, value);
  }
  return merged;
}

function normalizeValue(value: string): string {
  return value.normalize('NFKC').trim().toLowerCase().replace(/\s+/g, ' ');
}

function parseAspectRatio(raw: string, allowed: readonly string[]): string {
  const text = raw.normalize('NFKC').trim().toLowerCase();
  const match = /^(\d{1,5})\s*[:x×/]\s*(\d{1,5})$/.exec(text);
  const list = allowed.join(', ');
  if (!match) {
    throw new UserError(ErrorCode.FlagInvalid, `\`--ar\` must be a ratio such as 16:9; this engine offers ${list}.`, { field: 'ar' });
  }
  const width = Number(match[1]);
  const height = Number(match[2]);
  if (width === 0 || height === 0) {
    throw new UserError(ErrorCode.FlagInvalid, `\`--ar\` must be a ratio such as 16:9; this engine offers ${list}.`, { field: 'ar' });
  }
  const divisor = greatestCommonDivisor(width, height);
  const reduced = `${width / divisor}:${height / divisor}`;
  const found = allowed.find((ratio) => ratio === reduced);
  if (!found) {
    throw new UserError(ErrorCode.FlagInvalid, `The aspect ratio ${reduced} is not available; this engine offers ${list}.`, { field: 'ar' });
  }
  return found;
}

function parseInteger(raw: string, name: string, min: number, max: number): number {
  const text = raw.normalize('NFKC').trim().replace(/_/g, '');
  const value = /^[+-]?\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UserError(ErrorCode.FlagInvalid, `\`--${name}\` must be a whole number from ${min} to ${max}; got "${shorten(raw)}".`, { field: name });
  }
  return value;
}

function parseDecimal(raw: string, name: string, min: number, max: number): number {
  const text = raw.normalize('NFKC').trim().replace(',', '.');
  const value = /^[+-]?(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new UserError(ErrorCode.FlagInvalid, `\`--${name}\` must be a number from ${min} to ${max}; got "${shorten(raw)}".`, { field: name });
  }
  return value;
}

function unknownFlag(name: string): UserError {
  const known = flagDefinitions.map((flag) => `--${flag.name}`).join(', ');
  const suggestion = closestFlag(name);
  const shown = shorten(name, 24);
  const hint = suggestion ? ` Did you mean \`--${suggestion}\`?` : '';
  return new UserError(ErrorCode.UnknownFlag, `Unknown flag \`--${shown}\`.${hint} Known flags: ${known} (--cfg is --guidance).`, { field: suggestion ?? name });
}

/** The known flag closest to `name` by edit distance, when it is close enough to be a typo. */
export function closestFlag(name: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const [candidate, flag] of flagByName) {
    const distance = editDistance(name.toLowerCase(), candidate);
    if (!best || distance < best.distance) best = { name: flag.name, distance };
  }
  if (!best) return undefined;
  const allowed = Math.max(1, Math.min(3, Math.floor(name.length / 2)));
  return best.distance <= allowed ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  const left = Array.from(a).slice(0, 64);
  const right = Array.from(b);
  let previous = Array.from({ length: right.length + 1 }, (_, index) => index);
  for (let i = 1; i <= left.length; i += 1) {
    const row = [i];
    for (let j = 1; j <= right.length; j += 1) {
      const cost = left[i - 1] === right[j - 1] ? 0 : 1;
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = row;
  }
  return previous[right.length]!;
}

function greatestCommonDivisor(a: number, b: number): number {
  return b === 0 ? a : greatestCommonDivisor(b, a % b);
}

/** Invisible characters alone do not make a prompt. */
function isBlank(text: string): boolean {
  return text.replace(/[\s\p{Cc}\p{Cf}\p{Z}]+/gu, '').replace(/[\u{FE00}-\u{FE0F}\u{E0100}-\u{E01EF}\u{3164}\u{115F}\u{1160}\u{FFA0}]/gu, '') === '';
}

/** Lone surrogates become U+FFFD so that later stages see well-formed text. */
function toWellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** User text quoted in a message: short, and unable to break out of code formatting. */
function shorten(text: string, max = 40): string {
  const clean = text.replace(/[`\p{Cc}]/gu, '');
  const points = Array.from(clean);
  return points.length > max ? `${points.slice(0, max).join('')}…` : clean;
}

/** A compiled `config.blockedWords` list. */
export interface BlockList {
  /** True when `text` contains a blocked word or matches a blocked pattern. */
  matches(text: string): boolean;
}

const blockListCache = new Map<string, BlockList>();

/**
 * Compiles blocked words: `/pattern/flags` entries are regular expressions, every other entry is a
 * whole word or phrase matched case-insensitively (after NFKC normalisation, ignoring invisible
 * format characters, so `ｂａｄ` and `b\u200Bad` match `bad`). Throws {@link ConfigError} for an
 * invalid expression, so start-up can check the list once.
 */
export function compileBlockList(entries: readonly string[]): BlockList {
  const key = JSON.stringify(entries);
  const cached = blockListCache.get(key);
  if (cached) return cached;
  const patterns: RegExp[] = [];
  for (const entry of entries) {
    const trimmed = entry.trim();
    if (trimmed === '') continue;
    const literal = /^\/(.+)\/([a-z]*)$/s.exec(trimmed);
    if (literal) {
      try {
        // g and y would make test() stateful.
        patterns.push(new RegExp(literal[1]!, literal[2]!.replace(/[gy]/g, '')));
      } catch (error) {
        throw new ConfigError('BLOCKED_WORDS', 'a comma list of words or /regular expressions/', `has an entry that is not a valid regular expression (${(error as Error).message})`, 'blockedWords');
      }
      continue;
    }
    const word = normalizeForMatching(trimmed).split(/\s+/).map(escapeRegExp).join('\\s+');
    patterns.push(new RegExp(`(?<![\\p{L}\\p{N}\\p{M}_])${word}(?![\\p{L}\\p{N}\\p{M}_])`, 'iu'));
  }
  const list: BlockList = {
    matches(text: string): boolean {
      const normalized = normalizeForMatching(text);
      return patterns.some((pattern) => pattern.test(text) || pattern.test(normalized));
    },
  };
  if (blockListCache.size > 32) blockListCache.clear();
  blockListCache.set(key, list);
  return list;
}

function normalizeForMatching(text: string): string {
  return text.normalize('NFKC').replace(/\p{Cf}/gu, '').toLowerCase();
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
