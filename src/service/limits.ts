/**
 * The per-user limits admins may change at runtime, as a contract the generation services
 * implement and `admin show-limits` / `set-limit` (commands/admin.ts) call. In QUEUE=redis the
 * changes live in Redis, so every bot process of a deployment enforces the same values.
 */
import type { UserLimits } from './job-requests.js';

/** The per-user limits an admin may change at runtime. */
export type LimitValues = UserLimits;

/** The adjustable limits, in the order the Redis scripts read them. */
export const limitNames = ['ratePerMinute', 'burst', 'maxRunning', 'maxQueued'] as const satisfies ReadonlyArray<keyof LimitValues>;

/** Ranges of the adjustable limits (the same as the configuration's). */
export const limitRanges: Record<keyof LimitValues, { min: number; max: number }> = {
  ratePerMinute: { min: 1, max: 10000 },
  burst: { min: 1, max: 1000 },
  maxRunning: { min: 1, max: 100 },
  maxQueued: { min: 0, max: 1000 },
};

/**
 * Implemented by the generation service to let admins change limits at runtime. Optional: without
 * it, `admin show-limits` / `set-limit` answer that this deployment does not support it.
 */
export interface LimitControls {
  getLimits(): LimitValues | Promise<LimitValues>;
  /** Applies the changes to new requests at once and returns the limits now in force. */
  setLimits(changes: Partial<LimitValues>): LimitValues | Promise<LimitValues>;
}

/** True for a whole number inside the limit's range. */
export function isValidLimit(field: keyof LimitValues, value: unknown): value is number {
  const range = limitRanges[field];
  return typeof value === 'number' && Number.isInteger(value) && value >= range.min && value <= range.max;
}

/** Throws a RangeError naming the first change outside its range; returns the defined changes. */
export function checkLimitChanges(changes: Partial<LimitValues>): Partial<LimitValues> {
  const checked: Partial<LimitValues> = {};
  for (const field of limitNames) {
    const value = changes[field];
    if (value === undefined) continue;
    const range = limitRanges[field];
    if (!isValidLimit(field, value)) throw new RangeError(`${field} must be an integer ${range.min}..${range.max}`);
    checked[field] = value;
  }
  return checked;
}

/**
 * Stored overrides (strings from Redis or values from Keyv) over the configured limits; a missing
 * or malformed override falls back to the configured value.
 */
export function withOverrides(configured: LimitValues, stored: Partial<Record<keyof LimitValues, unknown>> | undefined): LimitValues {
  const result = { ...configured };
  for (const field of limitNames) {
    const raw = stored?.[field];
    const value = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw;
    if (isValidLimit(field, value)) result[field] = value;
  }
  return result;
}
