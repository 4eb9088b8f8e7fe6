/**
 * The Lua scripts that make admission and per-user running limits atomic across processes. Each
 * runs as one Redis command, so two bots admitting for the same user, or two workers claiming
 * that user's jobs, can never both see a free place (a Keyv get-then-set could).
 *
 * A user's state is three sorted sets (queued, running, parked) of job ids plus a token bucket.
 * Entries whose BullMQ job has finished or vanished are pruned on the way, so a process that
 * died between two steps cannot leave a user blocked for longer than the grace period.
 *
 * The limits are read inside the scripts too: an admin's overrides (the deployment's limits hash)
 * where set, the caller's configured values otherwise, so that every bot and worker applies a
 * change from its next admission or claim on, without caches to go stale.
 */
import type { Redis } from 'ioredis';
import { limitNames, limitRanges } from '../limits.js';
import type { RedisKeys } from './keys.js';

/** Removes ids whose job finished, or whose job never appeared within the grace period. */
const prune = `
local function prune(key, jobPrefix, now, grace, prioritiesKey)
  local members = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id = members[i]
    local score = tonumber(members[i + 1])
    local jobKey = jobPrefix .. id
    local stale = false
    if redis.call('EXISTS', jobKey) == 1 then
      stale = redis.call('HEXISTS', jobKey, 'finishedOn') == 1
    else
      stale = score < now - grace
    end
    if stale then
      redis.call('ZREM', key, id)
      if prioritiesKey then redis.call('HDEL', prioritiesKey, id) end
    end
  end
end
`;

/**
 * The limits in force. `limits(key, configured, pinned)`: the overrides in the hash `key` where
 * they are whole numbers in range, else `configured` (a list in {@link limitNames} order); a field
 * whose character in `pinned` is '1' keeps its configured value (a per-user override of the bot).
 */
const readLimits = `
local limitNames = {${limitNames.map((name) => `'${name}'`).join(', ')}}
local limitMinimums = {${limitNames.map((name) => limitRanges[name].min).join(', ')}}
local limitMaximums = {${limitNames.map((name) => limitRanges[name].max).join(', ')}}
local function limits(key, configured, pinned)
  local stored = redis.call('HMGET', key, unpack(limitNames))
  local result = {}
  for i = 1, #limitNames do
    local value = nil
    local text = stored[i]
    if text and string.sub(pinned, i, i) ~= '1' and string.match(text, '^%d+$') then value = tonumber(text) end
    if value == nil or value < limitMinimums[i] or value > limitMaximums[i] then value = tonumber(configured[i]) end
    result[i] = value
  end
  return result
end
`;

/**
 * KEYS: bucket, queued, running, press, priorities, limits. ARGV: now, ratePerMinute, burst,
 * maxRunning, maxQueued (the configured values), jobId, jobPrefix, pressTtlMs (0 = no dedupe),
 * graceMs, maxPriority, pinned (see {@link readLimits}).
 * Returns {kind, ratePerMinute, burst, maxRunning, maxQueued, ...}: the limits it applied, then
 * 'ok': priority, tokensLeft | 'duplicate': jobId | 'full': running, queued, headId, oldestRunningStart | 'rate': retryAfterMs.
 * The priority is 1 + the user's pending jobs (so newcomers go first), but never ahead of the
 * user's own waiting jobs (so each user's jobs keep their order).
 */
const admitScript = `${prune}${readLimits}
local now = tonumber(ARGV[1])
local applied = limits(KEYS[6], {ARGV[2], ARGV[3], ARGV[4], ARGV[5]}, ARGV[11])
local rate = applied[1]
local burst = applied[2]
local maxRunning = applied[3]
local maxQueued = applied[4]
local jobId = ARGV[6]
local pressTtl = tonumber(ARGV[8])
local grace = tonumber(ARGV[9])
local function reply(kind, ...)
  return {kind, rate, burst, maxRunning, maxQueued, ...}
end
if pressTtl > 0 then
  local existing = redis.call('GET', KEYS[4])
  if existing then return reply('duplicate', existing) end
end
prune(KEYS[2], ARGV[7], now, grace, KEYS[5])
prune(KEYS[3], ARGV[7], now, grace, false)
local running = redis.call('ZCARD', KEYS[3])
local queued = redis.call('ZCARD', KEYS[2])
if running + queued >= maxRunning + maxQueued then
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1] or ''
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2] or ''
  return reply('full', running, queued, head, tostring(oldest))
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 60000)
if tokens < 1 then
  return reply('rate', tostring((1 - tokens) * 60000 / rate))
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 60000 / rate) + 60000)
local priority = 1 + running + queued
for _, value in ipairs(redis.call('HVALS', KEYS[5])) do
  priority = math.max(priority, tonumber(value) + 1)
end
priority = math.min(priority, tonumber(ARGV[10]))
redis.call('ZADD', KEYS[2], now, jobId)
redis.call('HSET', KEYS[5], jobId, priority)
if pressTtl > 0 then redis.call('SET', KEYS[4], jobId, 'PX', pressTtl) end
return reply('ok', priority, tostring(tokens))
`;

/**
 * KEYS: bucket, limits. ARGV: now, ratePerMinute, burst, maxRunning, maxQueued (configured),
 * pinned. Returns {tokens, ratePerMinute, burst, maxRunning, maxQueued} without taking a token.
 */
const peekScript = `${readLimits}
local now = tonumber(ARGV[1])
local applied = limits(KEYS[2], {ARGV[2], ARGV[3], ARGV[4], ARGV[5]}, ARGV[6])
local rate = applied[1]
local burst = applied[2]
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 60000)
end
return {tostring(tokens), applied[1], applied[2], applied[3], applied[4]}
`;

/**
 * A worker asks to start a job. KEYS: queued, running, parked, starts, cancelled, priorities,
 * limits. ARGV: now, maxRunning (as admitted), jobId, jobPrefix, graceMs, pinned ('1': keep
 * maxRunning; otherwise an admin's override applies). Returns {'run', starts} | {'park'} | {'cancelled'}.
 * A job already counted as running is a retry after its worker died: it runs at once.
 */
const claimScript = `${prune}${readLimits}
local now = tonumber(ARGV[1])
-- Only the running limit matters here: the other three are pinned to placeholders.
local maxRunning = limits(KEYS[7], {'1', '1', ARGV[2], '0'}, '11' .. ARGV[6] .. '1')[3]
local jobId = ARGV[3]
if redis.call('EXISTS', KEYS[5]) == 1 then return {'cancelled'} end
if not redis.call('ZSCORE', KEYS[2], jobId) then
  prune(KEYS[2], ARGV[4], now, tonumber(ARGV[5]), false)
  if redis.call('ZCARD', KEYS[2]) >= maxRunning then
    redis.call('ZADD', KEYS[3], now, jobId)
    return {'park'}
  end
  redis.call('ZADD', KEYS[2], now, jobId)
end
redis.call('ZREM', KEYS[1], jobId)
redis.call('ZREM', KEYS[3], jobId)
redis.call('HDEL', KEYS[6], jobId)
local starts = redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], 604800000)
return {'run', starts}
`;

/**
 * A job stops running. KEYS: queued, running, parked, priorities. ARGV: jobId, requeue (1 = it
 * will run again), now, its priority. Returns the user's parked job ids, which may now run.
 */
const releaseScript = `
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[1])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
local parked = redis.call('ZRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[3])
return parked
`;

/**
 * Places of waiting jobs. KEYS: prioritized, wait, delayed. ARGV: pairs of (jobId, priority).
 * Returns one number per job: its 1-based place among waiting jobs; minus the estimated place of
 * a parked (delayed) job, after the waiting jobs of its priority; 0 for a job not waiting
 * (running or finished).
 */
const positionsScript = `
local ahead = redis.call('LLEN', KEYS[2])
local result = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  local rank = redis.call('ZRANK', KEYS[1], id)
  if rank then
    result[#result + 1] = ahead + rank + 1
  elseif redis.call('LPOS', KEYS[2], id) then
    result[#result + 1] = 1
  elseif redis.call('ZSCORE', KEYS[3], id) then
    local priority = tonumber(ARGV[i + 1])
    result[#result + 1] = -(ahead + redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. tostring((priority + 1) * 4294967296)) + 1)
  else
    result[#result + 1] = 0
  end
end
return result
`;

/** KEYS: stats. ARGV: kind, durationMs, smoothing. Moves the kind's moving average. */
const recordDurationScript = `
local field = 'avg:' .. ARGV[1]
local current = tonumber(redis.call('HGET', KEYS[1], field))
local value = tonumber(ARGV[2])
if current then value = current + tonumber(ARGV[3]) * (value - current) end
redis.call('HSET', KEYS[1], field, tostring(value))
return tostring(value)
`;

/** The outcome of an admission attempt, with the limits it applied. */
export type AdmitResult = { limits: AdmitLimits } & (
  | { kind: 'ok'; priority: number; tokensLeft: number }
  | { kind: 'duplicate'; jobId: string }
  | { kind: 'full'; running: number; queued: number; headId: string | undefined; oldestRunningStart: number | undefined }
  | { kind: 'rate'; retryAfterMs: number }
);

/** The outcome of a worker's claim on a job. */
export type ClaimResult = { kind: 'run'; starts: number } | { kind: 'park' } | { kind: 'cancelled' };

/** The limits an admission checks. */
export interface AdmitLimits {
  ratePerMinute: number;
  burst: number;
  maxRunning: number;
  maxQueued: number;
}

/** Which configured limits an admin's override may not replace (per-user overrides of a bot). */
export type PinnedLimits = Partial<Record<keyof AdmitLimits, boolean>>;

/** The `pinned` argument of the scripts: one '1' or '0' per limit, in {@link limitNames} order. */
function pinnedArgument(pinned: PinnedLimits = {}): string {
  return limitNames.map((name) => (pinned[name] ? '1' : '0')).join('');
}

/** The four limits a script returned from `offset` on. */
function limitsOf(reply: Reply, offset: number): AdmitLimits {
  return { ratePerMinute: Number(reply[offset]), burst: Number(reply[offset + 1]), maxRunning: Number(reply[offset + 2]), maxQueued: Number(reply[offset + 3]) };
}

/** How long an id may sit in a user's set without a BullMQ job before it is treated as stale. */
export const staleGraceMs = 60_000;

/** BullMQ's largest priority. */
export const maxPriority = 2_097_152;

type Reply = Array<string | number>;

/** Typed calls of the scripts over one connection (EVALSHA with a fallback to EVAL, by ioredis). */
export class AdmissionScripts {
  private readonly connection: Redis & Record<string, (...args: Array<string | number>) => Promise<unknown>>;

  constructor(connection: Redis, private readonly keys: RedisKeys) {
    const scripts: Record<string, { lua: string; keys: number }> = {
      imagineAdmit: { lua: admitScript, keys: 6 },
      imaginePeek: { lua: peekScript, keys: 2 },
      imagineClaim: { lua: claimScript, keys: 7 },
      imagineRelease: { lua: releaseScript, keys: 4 },
      imaginePositions: { lua: positionsScript, keys: 3 },
      imagineRecordDuration: { lua: recordDurationScript, keys: 1 },
    };
    for (const [name, script] of Object.entries(scripts)) {
      if (!(name in connection)) connection.defineCommand(name, { lua: script.lua, numberOfKeys: script.keys });
    }
    this.connection = connection as typeof this.connection;
  }

  /**
   * Checks the user's limits (an admin's overrides where set and not pinned, else `limits`) and
   * token bucket and, if all allow, records the job as queued.
   */
  async admit(options: { userKey: string; jobId: string; now: number; limits: AdmitLimits; pinned?: PinnedLimits; pressSignature?: string; pressTtlMs: number }): Promise<AdmitResult> {
    const { userKey, limits } = options;
    const pressKey = this.keys.press(options.pressSignature ?? 'none');
    const reply = (await this.connection.imagineAdmit!(
      this.keys.bucket(userKey), this.keys.queued(userKey), this.keys.running(userKey), pressKey, this.keys.priorities(userKey), this.keys.limits,
      options.now, limits.ratePerMinute, limits.burst, limits.maxRunning, limits.maxQueued, options.jobId, this.keys.jobPrefix,
      options.pressSignature ? options.pressTtlMs : 0, staleGraceMs, maxPriority, pinnedArgument(options.pinned),
    )) as Reply;
    const applied = limitsOf(reply, 1);
    switch (reply[0]) {
      case 'ok':
        return { kind: 'ok', priority: Number(reply[5]), tokensLeft: Number(reply[6]), limits: applied };
      case 'duplicate':
        return { kind: 'duplicate', jobId: String(reply[5]), limits: applied };
      case 'full':
        return { kind: 'full', running: Number(reply[5]), queued: Number(reply[6]), headId: reply[7] ? String(reply[7]) : undefined, oldestRunningStart: reply[8] ? Number(reply[8]) : undefined, limits: applied };
      default:
        return { kind: 'rate', retryAfterMs: Number(reply[5]), limits: applied };
    }
  }

  /** Tokens the user has now (fractional), without taking one, and the limits in force for the user. */
  async peek(userKey: string, now: number, limits: AdmitLimits, pinned?: PinnedLimits): Promise<{ tokens: number; limits: AdmitLimits }> {
    const reply = (await this.connection.imaginePeek!(this.keys.bucket(userKey), this.keys.limits, now, limits.ratePerMinute, limits.burst, limits.maxRunning, limits.maxQueued, pinnedArgument(pinned))) as Reply;
    return { tokens: Number(reply[0]), limits: limitsOf(reply, 1) };
  }

  /**
   * A worker's claim: run now, park (the user runs enough already) or drop (cancelled). The
   * running limit is an admin's override when one is set, unless `maxRunningPinned`.
   */
  async claim(options: { userKey: string; jobId: string; now: number; maxRunning: number; maxRunningPinned?: boolean }): Promise<ClaimResult> {
    const { userKey, jobId } = options;
    const reply = (await this.connection.imagineClaim!(
      this.keys.queued(userKey), this.keys.running(userKey), this.keys.parked(userKey), this.keys.starts(jobId), this.keys.cancelled(jobId), this.keys.priorities(userKey), this.keys.limits,
      options.now, options.maxRunning, jobId, this.keys.jobPrefix, staleGraceMs, options.maxRunningPinned ? '1' : '0',
    )) as Reply;
    if (reply[0] === 'run') return { kind: 'run', starts: Number(reply[1]) };
    return reply[0] === 'park' ? { kind: 'park' } : { kind: 'cancelled' };
  }

  /** Forgets a job that stopped running (or re-queues it when it will run again); returns the user's parked jobs. */
  async release(options: { userKey: string; jobId: string; requeue: boolean; now: number; priority: number }): Promise<string[]> {
    const { userKey } = options;
    return (await this.connection.imagineRelease!(this.keys.queued(userKey), this.keys.running(userKey), this.keys.parked(userKey), this.keys.priorities(userKey), options.jobId, options.requeue ? '1' : '0', options.now, options.priority)) as string[];
  }

  /** Drops a job that will never start from its user's sets. */
  async forget(userKey: string, jobId: string): Promise<void> {
    await this.connection.multi().zrem(this.keys.queued(userKey), jobId).zrem(this.keys.parked(userKey), jobId).hdel(this.keys.priorities(userKey), jobId).exec();
  }

  /** Places of waiting jobs: > 0 waiting in line, < 0 parked (its absolute value is the estimated place), 0 running or finished. */
  async positions(jobs: Array<{ id: string; priority: number }>): Promise<number[]> {
    if (jobs.length === 0) return [];
    const args = jobs.flatMap((job) => [job.id, job.priority]);
    return ((await this.connection.imaginePositions!(this.keys.prioritized, this.keys.wait, this.keys.delayed, ...args)) as number[]).map(Number);
  }

  /** Moves the moving average of a kind's duration; returns the new average. */
  async recordDuration(kind: string, durationMs: number, smoothing: number): Promise<number> {
    return Number(await this.connection.imagineRecordDuration!(this.keys.stats, kind, Math.round(durationMs), smoothing));
  }
}
