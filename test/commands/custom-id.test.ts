import { ErrorCode, UserError } from '../../src/errors.js';
import { decodeButton, encodeButton, isImagineButtonId, maxCustomIdLength, type ButtonAction } from '../../commands/custom-id.js';

function refused(id: string): UserError {
  try {
    decodeButton(id);
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    return error as UserError;
  }
  throw new Error(`expected ${JSON.stringify(id)} to be refused`);
}

describe('button ids', () => {
  const longId = 'A'.repeat(20) + '-_'.repeat(10);
  const actions: ButtonAction[] = [];
  for (const jobId of ['j1', 'AbC_9-x', longId]) {
    for (let index = 1; index <= 4; index += 1) {
      actions.push({ kind: 'upscale', jobId, index });
      actions.push({ kind: 'vary', jobId, index, strength: 'subtle' });
      actions.push({ kind: 'vary', jobId, index, strength: 'strong' });
      actions.push({ kind: 'vary', jobId, index, strength: 'strong', strengthFromSettings: true });
    }
    actions.push({ kind: 'reroll', jobId });
  }

  test('every action round-trips, within 100 characters and with a version', () => {
    for (const action of actions) {
      const id = encodeButton(action);
      expect(id.length).toBeLessThanOrEqual(maxCustomIdLength);
      expect(id.startsWith('im1:')).toBe(true);
      expect(isImagineButtonId(id)).toBe(true);
      expect(decodeButton(id)).toEqual(action);
    }
    expect(encodeButton({ kind: 'upscale', jobId: 'abc', index: 2 })).toBe('im1:u:abc:2');
    expect(encodeButton({ kind: 'reroll', jobId: 'abc' })).toBe('im1:r:abc');
  });

  test('ids are distinct for distinct actions', () => {
    expect(new Set(actions.map(encodeButton)).size).toBe(actions.length);
  });

  test('actions that cannot be buttons are refused when encoding', () => {
    expect(() => encodeButton({ kind: 'upscale', jobId: 'a:b', index: 1 })).toThrow(UserError);
    expect(() => encodeButton({ kind: 'upscale', jobId: 'x'.repeat(41), index: 1 })).toThrow(UserError);
    expect(() => encodeButton({ kind: 'upscale', jobId: 'abc', index: 5 })).toThrow(UserError);
    expect(() => encodeButton({ kind: 'vary', jobId: 'abc', index: 0, strength: 'subtle' })).toThrow(UserError);
    expect(() => encodeButton({ kind: 'vary', jobId: 'abc', index: 1, strength: 'wild' as 'subtle' })).toThrow(UserError);
  });

  test('forged, damaged and foreign ids are refused with invalid_action', () => {
    const forgeries = [
      '', 'im1', 'im1:', 'im1:u', 'im1:u:abc', 'im1:u:abc:0', 'im1:u:abc:5', 'im1:u:abc:12', 'im1:u:abc:1:subtle', 'im1:x:abc:1',
      'im1:r:abc:1', 'im1:v:abc', 'im1:v:abc:1:medium', 'im1:u:ab c:1', 'im1:u:ab/c:1', 'im1:u:abc:1 ', ' im1:u:abc:1', 'IM1:u:abc:1',
      `im1:u:${'x'.repeat(41)}:1`, `im1:r:${'x'.repeat(200)}`, 'im1:u:ａｂｃ:1', 'im1:u:abc:١', 'im1:u:abc:1\n', 'button_1', '{"kind":"upscale"}',
    ];
    for (const forged of forgeries) expect(refused(forged).code).toBe(ErrorCode.InvalidAction);
  });

  test('ids of another version get their own explanation', () => {
    const error = refused('im2:u:abc:1');
    expect(error.code).toBe(ErrorCode.InvalidAction);
    expect(error.message).toContain('different version');
  });

  test('non-string input is refused, not crashed on', () => {
    expect(refused(undefined as unknown as string).code).toBe(ErrorCode.InvalidAction);
    expect(refused(42 as unknown as string).code).toBe(ErrorCode.InvalidAction);
  });
});

describe('button id fuzzing', () => {
  test('valid ids with random damage are decoded canonically or refused with invalid_action, never crash', () => {
    let state = 99;
    const next = (): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 4294967296;
    };
    const valid = ['im1:u:abc:1', 'im1:v:job_9-x:4', 'im1:v:j:2:subtle', 'im1:r:Q'];
    const alphabet = [':', '1', '4', '9', '0', 'a', '_', '-', 'strong', '\u0000', '🦊', '\ud800', ' ', 'im2'];
    let decoded = 0;
    for (let round = 0; round < 5000; round += 1) {
      let id = valid[Math.floor(next() * valid.length)]!;
      const edits = Math.floor(next() * 3);
      for (let edit = 0; edit < edits; edit += 1) {
        const at = Math.floor(next() * (id.length + 1));
        const piece = alphabet[Math.floor(next() * alphabet.length)]!;
        const kind = next();
        id = kind < 0.33 ? id.slice(0, at) + piece + id.slice(at) : kind < 0.66 ? id.slice(0, at) + id.slice(at + 1) : id.slice(0, at) + piece + id.slice(at + 1);
      }
      try {
        const action = decodeButton(id);
        expect(encodeButton(action)).toBe(id);
        decoded += 1;
      } catch (error) {
        expect(error).toBeInstanceOf(UserError);
        expect((error as UserError).code).toBe(ErrorCode.InvalidAction);
      }
    }
    expect(decoded).toBeGreaterThan(1000);
    expect(decoded).toBeLessThan(5000);
  });
});
