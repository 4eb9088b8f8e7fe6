/**
 * Structured logging with pino. Secrets never reach a log line: known keys are redacted by path,
 * and every message, error message and stack passes through {@link redactSecrets}.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { Config } from './config/config.js';
import { ImagineError, redactSecrets } from './errors.js';

/** The project's logger type. */
export type Logger = PinoLogger;

/** Keys whose values are never logged, at any of the first levels of nesting. */
const secretKeys = ['token', 'secret', 'password', 'authorization', 'signingSecret', 'botToken', 'appToken', 'apiKey', 'cookie', 'discordToken', 'slackBotToken', 'slackSigningSecret', 'slackAppToken', 'redisUrl', 'storeUrl'];

/** pino redact paths for {@link secretKeys}, top level and nested up to two levels. */
export const redactPaths: string[] = secretKeys.flatMap((key) => [key, `*.${key}`, `*.*.${key}`, `headers.${key}`, `req.headers.${key}`]);

/**
 * {@link redactSecrets} plus a mask for `Bot`/`Bearer` credentials: the shared pattern in
 * errors.ts replaces the keyword rather than the token after it.
 */
export function maskForLog(text: string): string {
  return redactSecrets(text.replace(/\b(Bot|Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, '$1 [redacted]'));
}

function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return maskForLog(value);
  if (value instanceof Error) return serializeErrorForLog(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value)) return `[${value.constructor.name} ${value.byteLength} bytes]`;
  if (Array.isArray(value)) return value.map((item) => redactDeep(item, depth + 1));
  const result: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) result[key] = redactDeep(item, depth + 1);
  return result;
}

/** Serialises an error for a log line: type, code, message and stack, all with secrets masked. */
export function serializeErrorForLog(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) {
    if (error !== null && typeof error === 'object') return redactDeep(error) as Record<string, unknown>;
    return { message: maskForLog(String(error)) };
  }
  const result: Record<string, unknown> = { type: error.name, message: maskForLog(error.message) };
  if (error instanceof ImagineError) result.code = error.code;
  if (error.stack) result.stack = maskForLog(error.stack);
  if (error.cause !== undefined) result.cause = serializeErrorForLog(error.cause);
  return result;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Where lines go; stdout by default. Tests pass a stream to read the lines. */
  destination?: DestinationStream;
  /** Fields on every line. */
  base?: Record<string, unknown>;
}

/** Creates the project's logger at the configured level. */
export function createLogger(config: Pick<Config, 'logLevel'>, options: LoggerOptions = {}): Logger {
  const logger = pino(
    {
      level: config.logLevel,
      base: options.base ?? { app: 'imagine' },
      redact: { paths: redactPaths, censor: '[redacted]' },
      serializers: { err: serializeErrorForLog, error: serializeErrorForLog },
      formatters: {
        // Strings anywhere in the merged object may carry a token (a URL, a header dump).
        log: (object) => redactDeep(object) as Record<string, unknown>,
      },
      hooks: {
        logMethod(parameters, method) {
          const masked = parameters.map((parameter) => (typeof parameter === 'string' ? maskForLog(parameter) : parameter));
          // pino would take the message of a lone error verbatim; give it the masked one.
          const [first, second] = masked;
          if (first instanceof Error && typeof second !== 'string') masked.splice(1, 0, maskForLog(first.message));
          return method.apply(this, masked as Parameters<typeof method>);
        },
      },
    },
    options.destination,
  );
  return logger;
}

/** A logger that writes nothing, for tests and libraries used without one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
