import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ModelError } from '../../../src/errors.js';
import { Random } from '../../../src/engine/random.js';
import { BytePairEncoder, bytesToUnicode } from '../../../src/engine/tokenizer/byte-pair-encoding.js';
import { ClipTokenizer, defaultMergesPath, tokenizeForCli } from '../../../src/engine/tokenizer/clip-tokenizer.js';

interface ReferenceRow { text: string; ids: number[] }

const fixture = new URL('../../fixtures/tokenizer/tokenizer-reference.json', import.meta.url);

let tokenizer: ClipTokenizer;
let reference: ReferenceRow[];
let mergeLines: string[];
let temporary: string;

beforeAll(async () => {
  tokenizer = await ClipTokenizer.fromMerges(defaultMergesPath);
  reference = JSON.parse(await readFile(fixture, 'utf8')) as ReferenceRow[];
  mergeLines = gunzipSync(await readFile(defaultMergesPath)).toString('utf8').split('\n').slice(1, 49152 - 256 - 2 + 1);
  temporary = await mkdtemp(join(tmpdir(), 'imagine-tokenizer-'));
});

afterAll(async () => {
  await rm(temporary, { recursive: true, force: true });
});

describe('ClipTokenizer from the merges list', () => {
  test('has CLIP\'s vocabulary', () => {
    expect(tokenizer.vocabularySize).toBe(49408);
    expect(tokenizer.startId).toBe(49406);
    expect(tokenizer.endId).toBe(49407);
  });

  test('the reference fixture has rows', () => {
    expect(reference.length).toBeGreaterThanOrEqual(14);
  });

  // One test per reference row so that a failure names the prompt.
  const rows = JSON.parse(readFileSync(fixture, 'utf8')) as ReferenceRow[];
  test.each(rows.map((row) => [row.text, row.ids] as const))('reproduces the reference ids for %j', (text, ids) => {
    expect(tokenizer.encode(text)).toEqual(ids);
  });

  test('decodes ids back to the cleaned text', () => {
    expect(tokenizer.decode(tokenizer.encode('A photo of a CAT, 🍜!'))).toBe('a photo of a cat , 🍜!');
  });
});

describe('text clean-up', () => {
  const same = (a: string, b: string): void => expect(tokenizer.encode(a)).toEqual(tokenizer.encode(b));

  test('unescapes HTML like Python\'s html.unescape, twice', () => {
    // Expected strings computed with Python 3's html.unescape.
    same('tom &amp; jerry', 'tom & jerry');
    same('&lt;3 &gt; &quot;q&quot; &apos;a&apos;', '<3 > "q" \'a\'');
    same('&amp;lt;', '<');
    same('&eacute;t&eacute;', 'été');
    same('&eacutex &copy2024 &notit;', 'éx ©2024 ¬it;');
    same('&#233;&#xE9;&#X41; &#65', 'ééa a');
    same('x&#0;&#128;&#150;&#55296;&#1114112;&#1;x', 'x\ufffd€–\ufffd\ufffdx');
    same('&unknown; & &;', '&unknown; & &;');
    expect(tokenizer.encode('&amp;')).not.toEqual(tokenizer.encode('amp'));
  });

  test('normalises to NFC, fixes curly quotes, ligatures and full-width forms as ftfy does', () => {
    same('Cafe\u0301', 'Café');
    same('don\u2019t', "don't");
    same('\u201cquoted\u201d', '"quoted"');
    same('\ufb01sh', 'fish');
    same('\uff21\uff22\uff23\u3000\uff11', 'abc 1');
    same('a\u0000b\u007f', 'ab');
  });

  test('collapses Python whitespace, including U+0085 and U+3000, and lower-cases', () => {
    same('  A\u0085\u2003b\u3000C \n', 'a b c');
    expect(tokenizer.encode('   ')).toEqual([49406, 49407]);
  });
});

/** A direct transcription of the reference's bpe() loop, to check the heap version against. */
function referenceBpe(ranks: Map<string, number>, token: string): string[] {
  let word = [...token.slice(0, -1).split(''), `${token.slice(-1)}</w>`];
  if (word.length === 1) return word;
  for (;;) {
    let best: [string, string] | undefined;
    let bestRank = Number.POSITIVE_INFINITY;
    for (let index = 0; index + 1 < word.length; index += 1) {
      const rank = ranks.get(`${word[index]} ${word[index + 1]}`);
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        best = [word[index]!, word[index + 1]!];
      }
    }
    if (best === undefined) return word;
    const [first, second] = best;
    const merged: string[] = [];
    let index = 0;
    while (index < word.length) {
      if (word[index] === first && index < word.length - 1 && word[index + 1] === second) {
        merged.push(first + second);
        index += 2;
      } else {
        merged.push(word[index]!);
        index += 1;
      }
    }
    word = merged;
    if (word.length === 1) return word;
  }
}

describe('BytePairEncoder', () => {
  test('matches the reference algorithm on random words, repeats included', () => {
    const merges = mergeLines.map((line) => line.split(' ') as [string, string]);
    const ranks = new Map(merges.map(([first, second], rank) => [`${first} ${second}`, rank]));
    const encoder = new BytePairEncoder(merges);
    const alphabet = 'aaabeeinorsttlmpcdkqzxy'.split('');
    const random = new Random(1);
    let compared = 0;
    for (let trial = 0; trial < 400; trial += 1) {
      const length = 1 + (random.nextUint32() % 24);
      let word = '';
      for (let index = 0; index < length; index += 1) word += alphabet[random.nextUint32() % alphabet.length];
      expect(encoder.encodeWord(word)).toEqual(referenceBpe(ranks, word));
      compared += 1;
    }
    for (const word of ['aaaaaaa', 'abababab', 'mississippi', 'lllll', 'ÃĥÃĥÃĥ']) {
      expect(encoder.encodeWord(word)).toEqual(referenceBpe(ranks, word));
      compared += 1;
    }
    expect(compared).toBe(405);
  });

  test('maps all 256 bytes to distinct printable characters', () => {
    const table = bytesToUnicode();
    expect(new Set(table.map(([byte]) => byte)).size).toBe(256);
    expect(new Set(table.map(([, character]) => character)).size).toBe(256);
    expect(table[0]).toEqual([0x21, '!']);
    expect(table.find(([byte]) => byte === 0x20)?.[1]).toBe('\u0120');
  });
});

describe('encodeForModel', () => {
  test('pads to 77 with the pad id and counts the real tokens', () => {
    const { ids, truncated, tokenCount } = tokenizer.encodeForModel('a photo of a cat');
    expect(ids).toHaveLength(77);
    expect(ids.slice(0, 7)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
    expect(ids.slice(7).every((id) => id === 0)).toBe(true);
    expect(truncated).toBe(false);
    expect(tokenCount).toBe(7);
    const padded = tokenizer.encodeForModel('a photo of a cat', { padId: 49407, contextLength: 10 });
    expect(padded.ids).toEqual([49406, 320, 1125, 539, 320, 2368, 49407, 49407, 49407, 49407]);
  });

  test('cuts long prompts keeping the end token last and reports it', () => {
    const text = Array.from({ length: 100 }, (_, index) => `word${index}`).join(' ');
    const full = tokenizer.encode(text);
    const { ids, truncated, tokenCount } = tokenizer.encodeForModel(text);
    expect(full.length).toBeGreaterThan(77);
    expect(truncated).toBe(true);
    expect(tokenCount).toBe(77);
    expect(ids).toHaveLength(77);
    expect(ids.slice(0, 76)).toEqual(full.slice(0, 76));
    expect(ids[76]).toBe(49407);
  });

  test('a prompt that exactly fits is not truncated; one token more is', () => {
    const fits = Array.from({ length: 75 }, () => 'cat').join(' ');
    expect(tokenizer.encode(fits)).toHaveLength(77);
    expect(tokenizer.encodeForModel(fits).truncated).toBe(false);
    expect(tokenizer.encodeForModel(`${fits} cat`).truncated).toBe(true);
    expect(tokenizer.encodeForModel(`${fits} cat`).ids).toEqual(tokenizer.encode(fits));
  });

  test('refuses a context too short for the start and end tokens', () => {
    expect(() => tokenizer.encodeForModel('x', { contextLength: 1 })).toThrow(RangeError);
  });
});

describe('any Unicode input', () => {
  const awkward = [
    '\ud83d', 'a\udc00b', '\udfff\ud800', // lone surrogates
    '👩‍👩‍👧‍👦 👨🏽‍🚀 🏳️‍🌈', 'a\u200db\u200c\u200b', // joiners and zero-width characters
    'مرحبا بالعالم ‏שלום‎', '\u202eevil\u202c', // right-to-left and overrides
    'Z̸̢͎a̵̪͑l̷̰̈g̶͖̾o̶̧͂', 'ﷺ ﷽ ǅ İ ß ΣΑΣ', '\u0000\u0001\u001b[31mred\u001b[0m', '\ufeff\ufffe\uffff',
    '𝕳𝖊𝖑𝖑𝖔 𠀀𠀁', '<|startoftext|><|endoftext|>', '&#xD800;&#x110000;&#99999999999999999999;',
  ];

  test.each(awkward.map((text) => [text]))('encodes %j without throwing, within the vocabulary', (text) => {
    const ids = tokenizer.encode(text);
    expect(ids[0]).toBe(49406);
    expect(ids.at(-1)).toBe(49407);
    expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 49408)).toBe(true);
    expect(tokenizer.encodeForModel(text).ids).toHaveLength(77);
  });

  test('lone surrogates encode as U+FFFD', () => {
    expect(tokenizer.encode('a\ud800b')).toEqual(tokenizer.encode('a\ufffdb'));
  });

  test('huge strings: many words and one enormous word', () => {
    const manyWords = 'a red fox jumps over 12 lazy dogs 🦊 '.repeat(40_000);
    const result = tokenizer.encodeForModel(manyWords);
    expect(result.truncated).toBe(true);
    expect(result.ids).toHaveLength(77);
    // 200,000 letters with no space: the heap-based merge keeps this near-linear.
    const random = new Random(3);
    let enormous = '';
    for (let index = 0; index < 200_000; index += 1) enormous += String.fromCharCode(97 + (random.nextUint32() % 26));
    const ids = tokenizer.encode(enormous);
    expect(ids.length).toBeGreaterThan(20_000);
    expect(tokenizer.decode(ids)).toBe(enormous);
  });
});

describe('ClipTokenizer from a Hugging Face folder', () => {
  /** Writes vocab.json and merges.txt the way Hugging Face derives them from CLIP's merges list. */
  async function writeHuggingFaceFolder(folder: string): Promise<void> {
    await mkdir(folder, { recursive: true });
    const symbols = bytesToUnicode().map(([, character]) => character);
    const tokens = [...symbols, ...symbols.map((symbol) => `${symbol}</w>`), ...mergeLines.map((line) => line.replace(' ', '')), '<|startoftext|>', '<|endoftext|>'];
    const vocabulary: Record<string, number> = {};
    tokens.forEach((token, id) => { vocabulary[token] = id; });
    await writeFile(join(folder, 'vocab.json'), JSON.stringify(vocabulary));
    await writeFile(join(folder, 'merges.txt'), `#version: 0.2\n${mergeLines.join('\n')}\n`);
  }

  test('gives the same ids as the merges list for every reference row and more', async () => {
    const folder = join(temporary, 'tokenizer');
    await writeHuggingFaceFolder(folder);
    const fromFolder = await ClipTokenizer.fromFolder(folder);
    expect(fromFolder.vocabularySize).toBe(49408);
    const texts = [...reference.map((row) => row.text), 'Ünïcödé façade, 12,345 things!?', '👩‍👩‍👧‍👦'];
    for (const text of texts) expect(fromFolder.encode(text)).toEqual(tokenizer.encode(text));
    for (const row of reference) expect(fromFolder.encode(row.text)).toEqual(row.ids);
  });

  test('falls back to a fast tokenizer\'s tokenizer.json', async () => {
    const folder = join(temporary, 'fast');
    await mkdir(folder, { recursive: true });
    const huggingFace = join(temporary, 'tokenizer');
    const vocabulary = JSON.parse(await readFile(join(huggingFace, 'vocab.json'), 'utf8')) as Record<string, number>;
    const merges = mergeLines.map((line) => line.split(' '));
    await writeFile(join(folder, 'tokenizer.json'), JSON.stringify({ model: { type: 'BPE', vocab: vocabulary, merges } }));
    const fast = await ClipTokenizer.fromFolder(folder);
    for (const row of reference) expect(fast.encode(row.text)).toEqual(row.ids);
  });

  test('missing or malformed files are model errors naming the file', async () => {
    const empty = join(temporary, 'empty');
    await mkdir(empty, { recursive: true });
    await expect(ClipTokenizer.fromFolder(empty)).rejects.toThrow(ModelError);
    await expect(ClipTokenizer.fromFolder(empty)).rejects.toThrow(/vocab\.json/);
    await expect(ClipTokenizer.fromMerges(join(empty, 'nope.txt.gz'))).rejects.toThrow(ModelError);
    const broken = join(temporary, 'broken');
    await mkdir(broken, { recursive: true });
    await writeFile(join(broken, 'vocab.json'), '{"a": 1}');
    await writeFile(join(broken, 'merges.txt'), '#version: 0.2\na b\n');
    await expect(ClipTokenizer.fromFolder(broken)).rejects.toThrow(/special tokens/);
    await writeFile(join(broken, 'vocab.json'), '[1,2');
    await expect(ClipTokenizer.fromFolder(broken)).rejects.toThrow(ModelError);
  });
});

describe('tokenizeForCli', () => {
  test('uses the shipped vocabulary and returns unpadded ids', async () => {
    for (const row of reference.slice(0, 3)) expect(await tokenizeForCli(row.text)).toEqual(row.ids);
  });

  test('accepts a Hugging Face folder instead', async () => {
    const row = reference[3]!;
    expect(await tokenizeForCli(row.text, join(temporary, 'tokenizer'))).toEqual(row.ids);
  });
});
