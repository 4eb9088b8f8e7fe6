/**
 * One error hierarchy for the whole project. Every error the core raises has a stable `code`
 * that adapters, logs and tests match on, and typed fields for what a user needs to act.
 * Messages of {@link UserError} subclasses are written for the end user and safe to show;
 * anything else reaches users only through {@link toUserMessage}.
 */

/** Stable error codes. Never rename one: adapters and stored job records refer to them. */
export const ErrorCode = {
  PromptEmpty: 'prompt_empty',
  PromptTooLong: 'prompt_too_long',
  PromptBlocked: 'prompt_blocked',
  UnknownFlag: 'unknown_flag',
  FlagRepeated: 'flag_repeated',
  FlagInvalid: 'flag_invalid',
  InvalidAction: 'invalid_action',
  RateLimited: 'rate_limited',
  TooManyQueued: 'too_many_queued',
  TooManyRunning: 'too_many_running',
  JobNotFound: 'job_not_found',
  JobNotReady: 'job_not_ready',
  NotPermitted: 'not_permitted',
  Cancelled: 'cancelled',
  TimedOut: 'timed_out',
  ShuttingDown: 'shutting_down',
  Store: 'store_failed',
  Engine: 'engine_failed',
  Unsupported: 'unsupported',
  Model: 'model_invalid',
  ProviderUnavailable: 'provider_unavailable',
  Config: 'config_invalid',
  Upload: 'upload_failed',
  Internal: 'internal',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base of every error the project raises on purpose. */
export class ImagineError extends Error {
  readonly code: ErrorCode;
  /** True when `message` is written for end users and safe to show them. */
  readonly userFacing: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; userFacing?: boolean } = {}) {
    super(redactSecrets(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.userFacing = options.userFacing ?? false;
  }

  /** Plain data for logs, worker threads, Redis and job records. */
  toJSON(): SerializedError {
    return { name: this.name, code: this.code, message: this.message, userFacing: this.userFacing, fields: this.fields() };
  }

  /** Typed fields that subclasses carry, as plain data. */
  protected fields(): Record<string, unknown> {
    return {};
  }
}

/** An error caused by what a user asked: its message tells them what to do instead. */
export class UserError extends ImagineError {
  /** The flag or option at fault, when there is one (`seed`, `ar`, `prompt`, ...). */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(code, message, { cause: options.cause, userFacing: true });
    this.field = options.field;
  }

  protected override fields(): Record<string, unknown> {
    return { field: this.field };
  }
}

/** A per-user limit refused the request; nothing was queued. */
export class LimitError extends UserError {
  /** How long until the same request would be accepted, in milliseconds. */
  readonly retryAfterMs: number;

  constructor(code: typeof ErrorCode.RateLimited | typeof ErrorCode.TooManyQueued | typeof ErrorCode.TooManyRunning, message: string, retryAfterMs: number) {
    super(code, message);
    this.retryAfterMs = Math.max(0, Math.ceil(retryAfterMs));
  }

  protected override fields(): Record<string, unknown> {
    return { retryAfterMs: this.retryAfterMs };
  }
}

/** Something about a job stops the request: unknown, expired, not yours, cancelled, timed out. */
export class JobError extends UserError {
  readonly jobId: string | undefined;

  constructor(code: ErrorCode, message: string, jobId?: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
    this.jobId = jobId;
  }

  protected override fields(): Record<string, unknown> {
    return { jobId: this.jobId };
  }
}

/** A configuration value is missing or invalid. Names the variable (and option) and what it accepts. */
export class ConfigError extends ImagineError {
  readonly variable: string;
  readonly accepted: string;

  constructor(variable: string, accepted: string, detail: string, option?: string) {
    const where = option ? `option \`${option}\` / environment variable ${variable}` : `environment variable ${variable}`;
    super(ErrorCode.Config, `Invalid configuration: ${where} ${detail}; accepted: ${accepted}.`);
    this.variable = variable;
    this.accepted = accepted;
  }

  protected override fields(): Record<string, unknown> {
    return { variable: this.variable, accepted: this.accepted };
  }
}

/** A model folder or file is missing, corrupt, of an unknown layout or of the wrong shape. */
export class ModelError extends ImagineError {
  /** The file (or folder) at fault. */
  readonly file: string;
  /** What was expected of it. */
  readonly expected: string;

  constructor(file: string, expected: string, detail: string, options: { cause?: unknown; code?: ErrorCode } = {}) {
    super(options.code ?? ErrorCode.Model, `${file}: ${detail} (expected ${expected})`, { cause: options.cause });
    this.file = file;
    this.expected = expected;
  }

  protected override fields(): Record<string, unknown> {
    return { file: this.file, expected: this.expected };
  }
}

/** Image generation failed for a reason that is not the user's. */
export class EngineError extends ImagineError {
  constructor(message: string, options: { cause?: unknown; code?: ErrorCode } = {}) {
    super(options.code ?? ErrorCode.Engine, message, { cause: options.cause });
  }
}

/** The job store could not read or write. */
export class StoreError extends ImagineError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(ErrorCode.Store, message, options);
  }
}

/** An error as plain data, for crossing threads, processes and storage. */
export interface SerializedError {
  name: string;
  code: ErrorCode;
  message: string;
  userFacing: boolean;
  fields: Record<string, unknown>;
}

/** Turns anything thrown into plain data; unknown errors become {@link ErrorCode.Internal}. */
export function serializeError(error: unknown): SerializedError {
  if (error instanceof ImagineError) return error.toJSON();
  if (isAbortError(error)) return new JobError(ErrorCode.Cancelled, 'The job was cancelled.').toJSON();
  const message = error instanceof Error ? error.message : String(error);
  return { name: 'Error', code: ErrorCode.Internal, message: redactSecrets(message), userFacing: false, fields: {} };
}

/** Rebuilds an error serialised by {@link serializeError}, keeping its class, code and fields. */
export function deserializeError(data: SerializedError): ImagineError {
  const fields = data.fields;
  const text = (key: string): string | undefined => (typeof fields[key] === 'string' ? (fields[key] as string) : undefined);
  switch (data.name) {
    case 'LimitError':
      return new LimitError(data.code as ConstructorParameters<typeof LimitError>[0], data.message, Number(fields.retryAfterMs ?? 0));
    case 'JobError':
      return new JobError(data.code, data.message, text('jobId'));
    case 'UserError':
      return new UserError(data.code, data.message, text('field') === undefined ? {} : { field: text('field')! });
    case 'ModelError': {
      const error = new ModelError(text('file') ?? '?', text('expected') ?? '?', '', { code: data.code });
      // The serialised message already names the file and what was expected.
      error.message = data.message;
      return error;
    }
    case 'StoreError':
      return new StoreError(data.message);
    case 'EngineError':
      return new EngineError(data.message, { code: data.code });
    default:
      return new ImagineError(data.code, data.message, { userFacing: data.userFacing });
  }
}

/** True for the errors an AbortSignal produces. */
export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

/**
 * The one place that turns any error into text for an end user. User errors keep their message;
 * everything else becomes a generic message with the code, so internals and secrets never leak.
 */
export function toUserMessage(error: unknown): string {
  if (error instanceof ImagineError && error.userFacing) return error.message;
  const code = error instanceof ImagineError ? error.code : ErrorCode.Internal;
  if (code === ErrorCode.ShuttingDown) return 'The bot is restarting and not taking new work right now. Please try again in a minute.';
  if (code === ErrorCode.Upload) return 'The image was made but could not be uploaded. Please try again.';
  return `Something went wrong while drawing (${code}). Please try again; if it keeps happening, tell the bot's admin.`;
}

const secretPatterns: RegExp[] = [
  /\b(xox[abposr]-[A-Za-z0-9-]{8,})/g, // Slack tokens
  /\b(xapp-[A-Za-z0-9-]{8,})/g, // Slack app tokens
  /\b([MNO][A-Za-z\d_-]{20,30}\.[A-Za-z\d_-]{5,8}\.[A-Za-z\d_-]{25,})/g, // Discord bot tokens
  /(?:Bot|Bearer)\s+([A-Za-z0-9._-]{16,})/g, // the token after the keyword
  /(redis(?:s)?:\/\/[^:@/\s]*:)[^@\s]+@/g, // passwords in connection URLs
];

const registeredSecrets = new Set<string>();

/** Registers a configured secret (a token, a signing key) so that it is masked wherever it appears. */
export function registerSecret(secret: string | undefined): void {
  if (secret && secret.length >= 6) registeredSecrets.add(secret);
}

/** Masks tokens and registered secrets in a piece of text. */
export function redactSecrets(text: string): string {
  let result = text;
  for (const secret of registeredSecrets) result = result.split(secret).join('[redacted]');
  for (const pattern of secretPatterns) {
    result = result.replace(pattern, (match, group: string) => (match.startsWith('redis') ? `${group}[redacted]@` : match.replace(group, '[redacted]')));
  }
  return result;
}

/** What a start-up failure prints: the message alone for errors we raised on purpose. */
export function startupFailureText(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  if (error instanceof ImagineError) return `Imagine could not start: ${error.message}`;
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return `Imagine could not start: ${redactSecrets(detail)}`;
}
