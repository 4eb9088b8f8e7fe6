import { ErrorCode, LimitError, ModelError, deserializeError, redactSecrets, registerSecret, serializeError, toUserMessage, EngineError } from '../src/errors.js';

describe('errors', () => {
  test('limit errors survive serialisation with their class and fields', () => {
    const original = new LimitError(ErrorCode.RateLimited, 'Slow down: try again in 5 s.', 4200.4);
    const copy = deserializeError(JSON.parse(JSON.stringify(serializeError(original))));
    expect(copy).toBeInstanceOf(LimitError);
    expect((copy as LimitError).retryAfterMs).toBe(4201);
    expect(copy.code).toBe('rate_limited');
  });

  test('model errors keep their message, file and expectation once, not wrapped twice', () => {
    const original = new ModelError('/models/x/unet/model.onnx', 'an ONNX model', 'the file does not exist');
    const copy = deserializeError(serializeError(original));
    expect(copy).toBeInstanceOf(ModelError);
    expect(copy.message).toBe(original.message);
    expect((copy as ModelError).file).toBe('/models/x/unet/model.onnx');
    expect((copy as ModelError).expected).toBe('an ONNX model');
  });

  test('internal errors never reach users verbatim', () => {
    const message = toUserMessage(new EngineError('onnxruntime exploded at /secret/path'));
    expect(message).not.toContain('/secret/path');
    expect(message).toContain('engine_failed');
  });

  test('registered secrets and token shapes are masked', () => {
    registerSecret('super-secret-value');
    expect(redactSecrets('token super-secret-value leaked')).toBe('token [redacted] leaked');
    expect(redactSecrets('auth xoxb-1234567890-abcdefghij')).not.toContain('xoxb-1234567890');
    expect(redactSecrets('redis://user:hunter2@host:6379')).toBe('redis://user:[redacted]@host:6379');
  });
});
