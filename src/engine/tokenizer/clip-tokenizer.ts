/**
 * OpenAI CLIP's tokenizer (byte-level BPE, 49,408 tokens), as used by every CLIP text encoder:
 * DALL·E 2 unCLIP and Stable Diffusion alike. Reproduces the reference simple_tokenizer.py.
 */

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { ModelError } from '../../errors.js';
import { BytePairEncoder, bytesToUnicode, endOfWord } from './byte-pair-encoding.js';
import { cleanText, whitespaceClass } from './text-cleaning.js';

const gunzipAsync = promisify(gunzip);

export const startOfTextToken = '<|startoftext|>';
export const endOfTextToken = '<|endoftext|>';

/** CLIP's text encoders read 77 tokens. */
export const defaultContextLength = 77;

/** The merges list CLIP ships, relative to the project root. */
export const defaultMergesPath = fileURLToPath(new URL('../../../models/clip-bpe/bpe_simple_vocab_16e6.txt.gz', import.meta.url));

/**
 * How many merges CLIP takes from bpe_simple_vocab_16e6.txt (after its header line): 49,152 minus
 * the 256 byte symbols and the 2 special tokens, giving a 49,408-token vocabulary.
 */
const clipMergeCount = 49_152 - 256 - 2;

/** CLIP's word pattern; `\s` spelled out as Python's whitespace (see {@link whitespaceClass}). */
const wordPattern = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${whitespaceClass}\\p{L}\\p{N}]+`,
  'giu',
);

/** A prompt ready for a text encoder. */
export interface ModelInput {
  /** Exactly `contextLength` ids: start token, text, end token, then padding. */
  ids: number[];
  /** True when the text had more tokens than fit and was cut (the end token is kept last). */
  truncated: boolean;
  /** Tokens before the padding, start and end included (at most `contextLength`). */
  tokenCount: number;
}

/** Options for {@link ClipTokenizer.encodeForModel}. */
export interface ModelInputOptions {
  /** Default 77. */
  contextLength?: number;
  /** The id that fills the rest; default 0 (CLIP and Stable Diffusion 2; SD 1.x uses 49407). */
  padId?: number;
}

const textEncoder = new TextEncoder();

/** CLIP's byte-level BPE tokenizer. Build it with {@link ClipTokenizer.fromMerges} or {@link ClipTokenizer.fromFolder}. */
export class ClipTokenizer {
  /** Id of `<|startoftext|>` (49406 in CLIP). */
  readonly startId: number;
  /** Id of `<|endoftext|>` (49407 in CLIP). */
  readonly endId: number;
  /** Number of entries in the vocabulary. */
  readonly vocabularySize: number;
  private readonly vocabulary: ReadonlyMap<string, number>;
  private readonly tokensById: ReadonlyMap<number, string>;
  private readonly encoder: BytePairEncoder;
  private readonly byteCharacters: string[];
  private readonly bytesByCharacter: ReadonlyMap<string, number>;

  /**
   * @param vocabulary token → id, including both special tokens.
   * @param merges merge pairs in priority order.
   * @param source where they came from, for error messages.
   */
  constructor(vocabulary: ReadonlyMap<string, number>, merges: ReadonlyArray<readonly [string, string]>, source = 'tokenizer') {
    const startId = vocabulary.get(startOfTextToken);
    const endId = vocabulary.get(endOfTextToken);
    if (startId === undefined || endId === undefined) {
      throw new ModelError(source, `a vocabulary with ${startOfTextToken} and ${endOfTextToken}`, 'the special tokens are missing');
    }
    this.vocabulary = vocabulary;
    this.startId = startId;
    this.endId = endId;
    this.vocabularySize = vocabulary.size;
    this.tokensById = new Map(Array.from(vocabulary, ([token, id]) => [id, token]));
    this.encoder = new BytePairEncoder(merges);
    this.byteCharacters = new Array<string>(256);
    const bytesByCharacter = new Map<string, number>();
    for (const [byte, character] of bytesToUnicode()) {
      this.byteCharacters[byte] = character;
      bytesByCharacter.set(character, byte);
    }
    this.bytesByCharacter = bytesByCharacter;
  }

  /** Builds CLIP's vocabulary from the merges list alone, the way simple_tokenizer.py does. */
  static fromMergesList(merges: ReadonlyArray<readonly [string, string]>): ClipTokenizer {
    return new ClipTokenizer(clipVocabulary(merges), merges, 'merges list');
  }

  /** Loads OpenAI's gzipped merges list (`bpe_simple_vocab_16e6.txt.gz`). */
  static async fromMerges(gzPath: string = defaultMergesPath): Promise<ClipTokenizer> {
    let text: string;
    try {
      text = (await gunzipAsync(await readFile(gzPath))).toString('utf8');
    } catch (error) {
      throw new ModelError(gzPath, 'a gzipped CLIP merges list (bpe_simple_vocab_16e6.txt.gz)', describe(error), { cause: error });
    }
    // Line 0 is a header; CLIP uses only the first 48,894 merges of the file.
    const merges = parseMerges(text.split('\n').slice(1, 1 + clipMergeCount), gzPath);
    if (merges.length < clipMergeCount) {
      throw new ModelError(gzPath, `${clipMergeCount} merges`, `only ${merges.length} found`);
    }
    return new ClipTokenizer(clipVocabulary(merges), merges, gzPath);
  }

  /**
   * Loads a Hugging Face tokenizer folder (e.g. Stable Diffusion's `tokenizer/`): `vocab.json` and
   * `merges.txt`, or failing those a fast tokenizer's `tokenizer.json`.
   */
  static async fromFolder(folder: string): Promise<ClipTokenizer> {
    const vocabularyPath = join(folder, 'vocab.json');
    const mergesPath = join(folder, 'merges.txt');
    if (!(await exists(vocabularyPath)) && (await exists(join(folder, 'tokenizer.json')))) {
      return fromFastTokenizerFile(join(folder, 'tokenizer.json'));
    }
    const vocabularyText = await readText(vocabularyPath, 'a JSON object of token → id');
    const mergesText = await readText(mergesPath, 'a BPE merges list, one "first second" pair a line');
    let parsed: unknown;
    try {
      parsed = JSON.parse(vocabularyText);
    } catch (error) {
      throw new ModelError(vocabularyPath, 'a JSON object of token → id', describe(error), { cause: error });
    }
    const vocabulary = toVocabulary(parsed, vocabularyPath);
    const lines = mergesText.split(/\r?\n/);
    const merges = parseMerges(lines[0]?.startsWith('#version') ? lines.slice(1) : lines, mergesPath);
    return new ClipTokenizer(vocabulary, merges, folder);
  }

  /** Token ids of `text` with the start and end tokens, without padding or truncation. */
  encode(text: string): number[] {
    return [this.startId, ...this.encodeText(text, Number.POSITIVE_INFINITY), this.endId];
  }

  /**
   * Exactly `contextLength` ids for a text encoder. Longer texts are cut, as CLIP's
   * `tokenize(truncate=True)` does: the first `contextLength - 1` tokens, then the end token.
   */
  encodeForModel(text: string, options: ModelInputOptions = {}): ModelInput {
    const contextLength = options.contextLength ?? defaultContextLength;
    const padId = options.padId ?? 0;
    if (!Number.isInteger(contextLength) || contextLength < 2) {
      throw new RangeError(`contextLength must be an integer of at least 2, got ${contextLength}`);
    }
    // One token more than fits tells whether anything was cut without encoding a huge text whole.
    const room = contextLength - 2;
    const body = this.encodeText(text, room + 1);
    const truncated = body.length > room;
    const ids = [this.startId, ...body.slice(0, room), this.endId];
    const tokenCount = ids.length;
    while (ids.length < contextLength) ids.push(padId);
    return { ids, truncated, tokenCount };
  }

  /** The text that ids stand for, lower-cased and cleaned as the tokenizer saw it; special tokens are dropped. */
  decode(ids: readonly number[]): string {
    let joined = '';
    for (const id of ids) {
      if (id === this.startId || id === this.endId) continue;
      joined += this.tokensById.get(id) ?? '';
    }
    const bytes: number[] = [];
    for (const character of joined.split(endOfWord).join(' ')) {
      const byte = character === ' ' ? 0x20 : this.bytesByCharacter.get(character);
      if (byte !== undefined) bytes.push(byte);
    }
    return new TextDecoder().decode(new Uint8Array(bytes)).trim();
  }

  /** Ids of the words in `text`, at most `limit` of them. */
  private encodeText(text: string, limit: number): number[] {
    const ids: number[] = [];
    if (limit <= 0) return ids;
    const unknownId = this.endId;
    for (const match of cleanText(text).matchAll(wordPattern)) {
      const word = match[0];
      if (word === startOfTextToken || word === endOfTextToken) {
        ids.push(this.vocabulary.get(word)!);
      } else {
        let mapped = '';
        for (const byte of textEncoder.encode(word)) mapped += this.byteCharacters[byte]!;
        // Hugging Face's CLIP tokenizer uses <|endoftext|> as its unknown token; CLIP's own
        // vocabulary covers every symbol its merges can produce.
        for (const symbol of this.encoder.encodeWord(mapped)) ids.push(this.vocabulary.get(symbol) ?? unknownId);
      }
      if (ids.length >= limit) return ids.slice(0, limit);
    }
    return ids;
  }
}

/** CLIP's vocabulary: byte symbols, the same with `</w>`, every merge's result, the two specials. */
function clipVocabulary(merges: ReadonlyArray<readonly [string, string]>): Map<string, number> {
  const tokens = bytesToUnicode().map(([, character]) => character);
  const all = [...tokens, ...tokens.map((token) => token + endOfWord), ...merges.map(([first, second]) => first + second), startOfTextToken, endOfTextToken];
  // Later duplicates win, like the reference's dict(zip(vocab, range(len(vocab)))).
  return new Map(all.map((token, id) => [token, id]));
}

function parseMerges(lines: readonly string[], source: string): Array<[string, string]> {
  const merges: Array<[string, string]> = [];
  for (const [index, line] of lines.entries()) {
    const trimmed = line.trim();
    if (trimmed === '') continue;
    const parts = trimmed.split(/\s+/);
    if (parts.length !== 2) throw new ModelError(source, 'one "first second" pair a line', `line ${index + 2} reads ${JSON.stringify(line.slice(0, 40))}`);
    merges.push([parts[0]!, parts[1]!]);
  }
  return merges;
}

function toVocabulary(parsed: unknown, source: string): Map<string, number> {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ModelError(source, 'a JSON object of token → id', 'it is not an object');
  }
  const vocabulary = new Map<string, number>();
  for (const [token, id] of Object.entries(parsed)) {
    if (!Number.isInteger(id)) throw new ModelError(source, 'integer ids', `the id of ${JSON.stringify(token)} is ${JSON.stringify(id)}`);
    vocabulary.set(token, id as number);
  }
  return vocabulary;
}

async function fromFastTokenizerFile(file: string): Promise<ClipTokenizer> {
  const expected = 'a Hugging Face tokenizer.json with a BPE model';
  let parsed: { model?: { vocab?: unknown; merges?: unknown } };
  try {
    parsed = JSON.parse(await readText(file, expected)) as typeof parsed;
  } catch (error) {
    if (error instanceof ModelError) throw error;
    throw new ModelError(file, expected, describe(error), { cause: error });
  }
  const vocabulary = toVocabulary(parsed.model?.vocab, file);
  const rawMerges = parsed.model?.merges;
  if (!Array.isArray(rawMerges)) throw new ModelError(file, expected, 'model.merges is missing');
  // Older files write merges as "a b", newer ones as ["a", "b"].
  const lines = rawMerges.map((merge: unknown) => (Array.isArray(merge) ? merge.join(' ') : String(merge)));
  return new ClipTokenizer(vocabulary, parseMerges(lines, file), file);
}

async function readText(file: string, expected: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ModelError(file, expected, describe(error), { cause: error });
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const defaultTokenizers = new Map<string, Promise<ClipTokenizer>>();

/**
 * Token ids for `npx imagine tokenize "<text>"`: start and end tokens, no padding.
 * @param merges a merges list (`.gz`) or a Hugging Face tokenizer folder; CLIP's by default.
 */
export async function tokenizeForCli(text: string, merges: string = defaultMergesPath): Promise<number[]> {
  let tokenizer = defaultTokenizers.get(merges);
  if (tokenizer === undefined) {
    tokenizer = (await isDirectory(merges)) ? ClipTokenizer.fromFolder(merges) : ClipTokenizer.fromMerges(merges);
    defaultTokenizers.set(merges, tokenizer);
    // A failed load is not remembered, so a fixed file works on the next call.
    tokenizer.catch(() => defaultTokenizers.delete(merges));
  }
  return (await tokenizer).encode(text);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
