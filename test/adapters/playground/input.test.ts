import { parseTypedCommand } from '../../../adapters/playground/input.js';
import { ErrorCode, UserError } from '../../../src/errors.js';

describe('parseTypedCommand', () => {
  test('text without a slash is an imagine prompt, flags and all', () => {
    expect(parseTypedCommand('  a red circle --ar 3:2 ')).toEqual({ name: 'imagine', options: { prompt: 'a red circle --ar 3:2' } });
  });

  test('/imagine takes the rest as the prompt, with or without Discord’s "prompt:"', () => {
    expect(parseTypedCommand('/imagine a red circle --seed 4')).toEqual({ name: 'imagine', options: { prompt: 'a red circle --seed 4' } });
    expect(parseTypedCommand('/IMAGINE prompt: a cat')).toEqual({ name: 'imagine', options: { prompt: 'a cat' } });
    expect(parseTypedCommand('/imagine\na dog')).toEqual({ name: 'imagine', options: { prompt: 'a dog' } });
  });

  test('/info and /help take no options', () => {
    expect(parseTypedCommand('/info')).toEqual({ name: 'info', options: {} });
    expect(parseTypedCommand('/help')).toEqual({ name: 'help', options: {} });
  });

  test('other commands take name:value options, converted to their types', () => {
    expect(parseTypedCommand('/settings aspect_ratio:3:2 variation:subtle')).toEqual({ name: 'settings', options: { aspect_ratio: '3:2', variation: 'subtle' } });
    expect(parseTypedCommand('/settings reset:true')).toEqual({ name: 'settings', options: { reset: true } });
    expect(parseTypedCommand('/cancel abc123')).toEqual({ name: 'cancel', options: { job: 'abc123' } });
    expect(parseTypedCommand('/admin action:set-limit limit:burst value:5')).toEqual({ name: 'admin', options: { action: 'set-limit', limit: 'burst', value: 5 } });
  });

  test('refuses an empty box, unknown commands and unknown or badly typed options with user errors', () => {
    const codeOf = (input: string): string | undefined => {
      try {
        parseTypedCommand(input);
        return undefined;
      } catch (error) {
        expect(error).toBeInstanceOf(UserError);
        return (error as UserError).code;
      }
    };
    expect(codeOf('   ')).toBe(ErrorCode.PromptEmpty);
    expect(codeOf('/dance')).toBe(ErrorCode.InvalidAction);
    expect(codeOf('/settings colour:red')).toBe(ErrorCode.UnknownFlag);
    expect(codeOf('/settings reset:maybe')).toBe(ErrorCode.FlagInvalid);
    expect(codeOf('/admin action:set-limit value:lots')).toBe(ErrorCode.FlagInvalid);
    expect(codeOf('/settings subtle')).toBe(ErrorCode.FlagInvalid);
  });
});
