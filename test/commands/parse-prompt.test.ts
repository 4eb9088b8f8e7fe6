import { ErrorCode, UserError, ConfigError } from '../../src/errors.js';
import { codePointLength, compileBlockList, maxPromptLength, parseImaginePrompt, promptContextFor, type PromptContext } from '../../commands/parse-prompt.js';
import { sizesForArea } from '../../src/engine/engine.js';

const context: PromptContext = { randomSeed: () => 7 };

function failure(input: string, extra: PromptContext = {}): UserError {
  try {
    parseImaginePrompt(input, { ...context, ...extra });
  } catch (error) {
    if (error instanceof UserError) return error;
    throw error;
  }
  throw new Error(`expected "${input}" to be refused`);
}

describe('parseImaginePrompt', () => {
  test('a plain prompt gets the defaults and a random seed', () => {
    expect(parseImaginePrompt('a red circle on a blue background', context)).toEqual({ prompt: 'a red circle on a blue background', aspectRatio: '1:1', seed: 7, chaos: 0 });
  });

  test('every flag is parsed', () => {
    const parameters = parseImaginePrompt('a fox in the snow --ar 16:9 --seed 42 --no text, blurry frame --steps 30 --guidance 7.5 --chaos 40', context);
    expect(parameters).toEqual({ prompt: 'a fox in the snow', aspectRatio: '16:9', seed: 42, negativePrompt: 'text, blurry frame', steps: 30, guidance: 7.5, chaos: 40 });
  });

  test('aliases, = values, case and em/en dashes from phones', () => {
    const parameters = parseImaginePrompt('cat —AR 9:16 –seed=5 --cfg 3 --c 10', context);
    expect(parameters).toMatchObject({ prompt: 'cat', aspectRatio: '9:16', seed: 5, guidance: 3, chaos: 10 });
    expect(parseImaginePrompt('cat —-ar 3:2', context).aspectRatio).toBe('3:2');
  });

  test('a dash before a word that is no flag is prose', () => {
    expect(parseImaginePrompt('cats —especially black ones --seed 1', context)).toMatchObject({ prompt: 'cats —especially black ones', seed: 1 });
    expect(parseImaginePrompt('a cat—a dog', context).prompt).toBe('a cat—a dog');
  });

  test('aspect ratios are reduced and checked against the engine', () => {
    expect(parseImaginePrompt('x --ar 1920:1080', context).aspectRatio).toBe('16:9');
    expect(parseImaginePrompt('x --ar 4x3', context).aspectRatio).toBe('4:3');
    const error = failure('x --ar 21:9');
    expect(error.code).toBe(ErrorCode.FlagInvalid);
    expect(error.message).toContain('16:9');
    const custom = promptContextFor({ sizes: { '1:1': { width: 64, height: 64 }, '2:1': { width: 128, height: 64 } }, limits: { minSteps: 2, maxSteps: 50, minGuidance: 1, maxGuidance: 20 } }, context);
    expect(parseImaginePrompt('x --ar 2:1', custom).aspectRatio).toBe('2:1');
    expect(failure('x --ar 16:9', custom).message).toContain('1:1, 2:1');
    expect(failure('x --steps 51', custom).message).toContain('2 to 50');
    expect(failure('x --guidance 0.5', custom).message).toContain('1 to 20');
  });

  test('the standard sizes of sizesForArea are all accepted', () => {
    const ratios = Object.keys(sizesForArea(64, 8));
    for (const ratio of ratios) expect(parseImaginePrompt(`x --ar ${ratio}`, { aspectRatios: ratios }).aspectRatio).toBe(ratio);
  });

  test('user defaults apply only when the prompt does not say', () => {
    expect(parseImaginePrompt('x', { ...context, defaults: { aspectRatio: '3:2' } }).aspectRatio).toBe('3:2');
    expect(parseImaginePrompt('x --ar 2:3', { ...context, defaults: { aspectRatio: '3:2' } }).aspectRatio).toBe('2:3');
    expect(parseImaginePrompt('x', { ...context, defaults: { aspectRatio: '5:1' } }).aspectRatio).toBe('1:1');
  });

  test('seed range', () => {
    expect(parseImaginePrompt('x --seed 0', context).seed).toBe(0);
    expect(parseImaginePrompt('x --seed 4294967295', context).seed).toBe(4294967295);
    for (const bad of ['4294967296', '-1', '1.5', 'abc', '1e3']) {
      const error = failure(`x --seed ${bad}`);
      expect(error.code).toBe(ErrorCode.FlagInvalid);
      expect(error.message).toContain('0 to 4294967295');
      expect(error.field).toBe('seed');
    }
  });

  test('chaos range', () => {
    expect(failure('x --chaos 101').message).toContain('0 to 100');
    expect(parseImaginePrompt('x --chaos 100', context).chaos).toBe(100);
  });

  test('random seeds are uint32 and differ', () => {
    const seeds = new Set(Array.from({ length: 20 }, () => parseImaginePrompt('x').seed));
    expect(seeds.size).toBeGreaterThan(15);
    for (const seed of seeds) expect(Number.isInteger(seed) && seed >= 0 && seed <= 4294967295).toBe(true);
  });

  test('empty prompts are refused', () => {
    for (const input of ['', '   ', '--ar 16:9', '\u200b\u200d', '\n\t --seed 3']) {
      expect(failure(input).code).toBe(ErrorCode.PromptEmpty);
    }
  });

  test('an emoji alone is a prompt', () => {
    expect(parseImaginePrompt('🦊', context).prompt).toBe('🦊');
    expect(parseImaginePrompt('👩‍👩‍👧‍👦 --ar 3:4', context)).toMatchObject({ prompt: '👩‍👩‍👧‍👦', aspectRatio: '3:4' });
  });

  test('the length limit counts code points, not UTF-16 units, and ignores flags', () => {
    const emoji = '🦊'.repeat(maxPromptLength);
    expect(codePointLength(emoji)).toBe(400);
    expect(parseImaginePrompt(`${emoji} --seed 1`, context).prompt).toBe(emoji);
    const error = failure(`${emoji}🦊`);
    expect(error.code).toBe(ErrorCode.PromptTooLong);
    expect(error.message).toContain('401');
    expect(error.message).toContain('400');
    expect(failure('a'.repeat(5000)).code).toBe(ErrorCode.PromptTooLong);
  });

  test('unknown flags suggest the closest known one', () => {
    const error = failure('x --sed 5');
    expect(error.code).toBe(ErrorCode.UnknownFlag);
    expect(error.message).toContain('Did you mean `--seed`');
    expect(failure('x --aspect-ratio 16:9').message).toContain('--ar');
    expect(failure('x --choas 5').message).toContain('`--chaos`');
    const far = failure('x --stylize 100');
    expect(far.message).not.toContain('Did you mean');
    expect(far.message).toContain('--seed');
  });

  test('a repeated flag is refused, aliases included', () => {
    expect(failure('x --seed 1 --seed 2').code).toBe(ErrorCode.FlagRepeated);
    expect(failure('x --cfg 3 --guidance 4').code).toBe(ErrorCode.FlagRepeated);
  });

  test('a flag without a value is refused', () => {
    for (const input of ['x --seed', 'x --ar --seed 2', 'x --no', 'x --seed=']) {
      const error = failure(input);
      expect(error.code).toBe(ErrorCode.FlagInvalid);
      expect(error.message).toContain('needs a value');
    }
  });

  test('a single-value flag with extra words says to put the prompt first', () => {
    const error = failure('x --ar 16:9 a dog');
    expect(error.code).toBe(ErrorCode.FlagInvalid);
    expect(error.message).toContain('takes one value');
  });

  test('native options fill the same fields; conflicts are refused, agreement is not', () => {
    expect(parseImaginePrompt('x', { ...context, options: { aspectRatio: '16:9', seed: 3, negativePrompt: 'dogs', chaos: '20' } })).toMatchObject({ aspectRatio: '16:9', seed: 3, negativePrompt: 'dogs', chaos: 20 });
    expect(parseImaginePrompt('x --seed 3', { ...context, options: { seed: 3 } }).seed).toBe(3);
    const error = failure('x --seed 4', { options: { seed: 3 } });
    expect(error.code).toBe(ErrorCode.FlagRepeated);
    expect(error.message).toContain('given twice');
    expect(failure('x', { options: { chaos: 200 } }).code).toBe(ErrorCode.FlagInvalid);
  });

  test('blocked words: whole words, case-insensitive, regex entries; the list is never echoed', () => {
    const blockedWords = ['badword', 'two words', '/forbid+en/i'];
    const blocked = (input: string): boolean => {
      try {
        parseImaginePrompt(input, { ...context, blockedWords });
        return false;
      } catch (error) {
        expect((error as UserError).code).toBe(ErrorCode.PromptBlocked);
        for (const entry of blockedWords) expect((error as UserError).message).not.toContain(entry);
        return true;
      }
    };
    expect(blocked('a BadWord here')).toBe(true);
    expect(blocked('a ｂａｄｗｏｒｄ here')).toBe(true);
    expect(blocked('a bad\u200bword here')).toBe(true);
    expect(blocked('badwords are fine')).toBe(false);
    expect(blocked('two   words')).toBe(true);
    expect(blocked('FORBIDDDEN')).toBe(true);
    expect(blocked('a clean prompt --no badword')).toBe(false);
    expect(() => compileBlockList(['/(/'])).toThrow(ConfigError);
  });
});

describe('parser fuzzing', () => {
  // A small deterministic generator so that failures reproduce.
  function generator(seed: number): () => number {
    let state = seed >>> 0;
    return () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const pieces = ['--', '—', '–', ' ', '\u200d', '\u0301', '\ud83e', '\udd8a', '🦊', '👩‍👩‍👧', '--ar', '--seed', '--no', ':', '=', '\u0000', '\n', '１６', 'a', '🏳️‍🌈', '\uFEFF', '\u202E'];

  test('random code points never crash the parser; it returns parameters or a UserError', () => {
    const random = generator(1234);
    for (let round = 0; round < 3000; round += 1) {
      const length = Math.floor(random() * 40);
      let input = '';
      for (let i = 0; i < length; i += 1) {
        const choice = random();
        if (choice < 0.4) input += pieces[Math.floor(random() * pieces.length)];
        else if (choice < 0.7) input += String.fromCharCode(Math.floor(random() * 0x10000));
        else input += String.fromCodePoint(Math.floor(random() * 0x110000));
      }
      try {
        const parameters = parseImaginePrompt(input, { randomSeed: () => 1 });
        expect(typeof parameters.prompt).toBe('string');
        expect(codePointLength(parameters.prompt)).toBeLessThanOrEqual(maxPromptLength);
        // Output is well-formed UTF-16: encoding round-trips.
        expect(Buffer.from(parameters.prompt, 'utf8').toString('utf8')).toBe(parameters.prompt);
      } catch (error) {
        if (!(error instanceof UserError)) throw new Error(`crash on ${JSON.stringify(input)}: ${String(error)}`);
      }
    }
  });
});

describe('round trip through the caption flags', () => {
  test('parametersText reproduces the parameters when parsed again', async () => {
    const { parametersText } = await import('../../commands/messages.js');
    const inputs = ['a fox', 'a fox --ar 9:16 --seed 0 --chaos 100 --steps 12 --guidance 0.5 --no red, green', '🦊 —no 🐔 --seed 4294967295'];
    for (const input of inputs) {
      const parameters = parseImaginePrompt(input, context);
      expect(parseImaginePrompt(`${parameters.prompt} ${parametersText(parameters)}`, { randomSeed: () => -1 })).toEqual(parameters);
    }
  });
});
