/**
 * Who shows a job's progress and end in QUEUE=redis, when bot processes come and go.
 *
 * The bot process that admits a job owns it: the job goes into the `undelivered` hash with the
 * bot's id and the job's platform. Every bot process keeps a heartbeat key alive; once an owner's
 * heartbeat lapses (the process died or restarted), any live bot process that serves the job's
 * platform may adopt the job and show it through that platform's {@link OrphanDelivery}.
 *
 * Before a result or failure is shown, one bot process claims it: the same Lua script that checks
 * the owner sets a per-job `delivering` key (SET NX semantics, with a TTL), so two live bots never
 * both show a job, even one whose owner only seemed dead. Once shown, the job leaves the hash, and
 * every later claim answers `done`. A bot that dies while showing leaves its claim to expire; the
 * job is then shown by another (the one case where a user may see a result twice).
 *
 * A bot that stops gracefully releases the jobs it hands over (they have no owner, so others adopt
 * them at once) and finally removes its heartbeat.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.js';

/**
 * The answer of a claim: `done` (already shown, or never tracked), `owned` (its live owner shows
 * it), `busy` (another bot is showing it), `free` (a peek found it orphaned), `adopted` (this bot
 * now owns it), `claimed` (this bot shows its end now).
 */
export type ClaimOutcome = 'done' | 'owned' | 'busy' | 'free' | 'adopted' | 'claimed';

/** What a claim asks for: only look, take over a job still running, or show a job's end. */
type ClaimMode = 'peek' | 'adopt' | 'claim';

/**
 * KEYS: undelivered, delivering(jobId). ARGV: jobId, botId, mode, leaseMs, botPrefix.
 * Another bot's claim or a live owner other than this bot keep the job; otherwise `adopt` and
 * `claim` make this bot its owner, and `claim` also takes the delivering key.
 */
const claimScript = `
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 'done' end
local ok, state = pcall(cjson.decode, entry)
if not ok or type(state) ~= 'table' then state = {} end
local owner = state.bot
if type(owner) == 'string' and owner ~= ARGV[2] and redis.call('EXISTS', ARGV[5] .. owner) == 1 then return 'owned' end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then return 'busy' end
if ARGV[3] == 'peek' then return 'free' end
if ARGV[3] == 'claim' then redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[4])) end
if owner ~= ARGV[2] then
  state.bot = ARGV[2]
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(state))
end
if ARGV[3] == 'claim' then return 'claimed' end
return 'adopted'
`;

/**
 * KEYS: undelivered. ARGV: botId, botPrefix, max, platforms…
 * Jobs of the given platforms whose owner is this bot or has no heartbeat, at most `max`.
 */
const orphansScript = `
local served = {}
for i = 4, #ARGV do served[ARGV[i]] = true end
local limit = tonumber(ARGV[3])
local result = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, state = pcall(cjson.decode, entries[i + 1])
  if ok and type(state) == 'table' and served[state.platform] then
    local owner = state.bot
    if type(owner) ~= 'string' or owner == ARGV[1] or redis.call('EXISTS', ARGV[2] .. owner) == 0 then
      result[#result + 1] = entries[i]
      if #result >= limit then break end
    end
  end
end
return result
`;

/**
 * KEYS: undelivered. ARGV: botId, jobIds…
 * Drops this bot as the owner of the given jobs, so that they are orphans at once; returns how many it owned.
 */
const releaseScript = `
local released = 0
for i = 2, #ARGV do
  local entry = redis.call('HGET', KEYS[1], ARGV[i])
  if entry then
    local ok, state = pcall(cjson.decode, entry)
    if ok and type(state) == 'table' and state.bot == ARGV[1] then
      state.bot = nil
      redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(state))
      released = released + 1
    end
  end
end
return released
`;

/** Timings of {@link DeliveryClaims}. */
export interface DeliveryClaimTimings {
  /** How long a heartbeat lives; other bots adopt this bot's jobs once it lapses. The heartbeat is renewed three times as often. */
  ownerTimeoutMs: number;
  /** How long a claim on showing a job's end lasts when its bot dies while showing it. */
  leaseMs: number;
}

/** The defaults: a dead bot's jobs are adopted within about 15 s. */
export const defaultDeliveryClaimTimings: DeliveryClaimTimings = { ownerTimeoutMs: 15_000, leaseMs: 120_000 };

/** One bot process's heartbeat and its claims on showing jobs. */
export class DeliveryClaims {
  /** This bot process, as owners are named in Redis. */
  readonly botId: string;
  private readonly connection: Redis & Record<string, (...args: Array<string | number>) => Promise<unknown>>;
  private readonly timings: DeliveryClaimTimings;
  /** Hears failed heartbeats (ioredis retries the connection by itself). */
  private readonly onError: (error: unknown) => void;
  private timer: NodeJS.Timeout | undefined;

  constructor(connection: Redis, private readonly keys: RedisKeys, options: Partial<DeliveryClaimTimings> & { botId?: string; onError?: (error: unknown) => void } = {}) {
    this.botId = options.botId ?? `bot-${randomBytes(6).toString('hex')}`;
    this.timings = {
      ownerTimeoutMs: options.ownerTimeoutMs ?? defaultDeliveryClaimTimings.ownerTimeoutMs,
      leaseMs: options.leaseMs ?? defaultDeliveryClaimTimings.leaseMs,
    };
    this.onError = options.onError ?? (() => undefined);
    if (!('imagineClaimDelivery' in connection)) connection.defineCommand('imagineClaimDelivery', { lua: claimScript, numberOfKeys: 2 });
    if (!('imagineOrphans' in connection)) connection.defineCommand('imagineOrphans', { lua: orphansScript, numberOfKeys: 1 });
    if (!('imagineReleaseDelivery' in connection)) connection.defineCommand('imagineReleaseDelivery', { lua: releaseScript, numberOfKeys: 1 });
    this.connection = connection as typeof this.connection;
  }

  /** Writes the heartbeat now and keeps renewing it until {@link stop}. */
  async start(): Promise<void> {
    await this.beat();
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.beat().catch(this.onError), Math.max(50, Math.floor(this.timings.ownerTimeoutMs / 3)));
    this.timer.unref();
  }

  /** Stops the heartbeat and removes it, so that other bots adopt what this one leaves at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.connection.del(this.keys.bot(this.botId));
  }

  private async beat(): Promise<void> {
    await this.connection.set(this.keys.bot(this.botId), String(Date.now()), 'PX', this.timings.ownerTimeoutMs);
  }

  /** Records a newly admitted job as this bot's, to be shown. */
  async track(jobId: string, platform: string, now: number): Promise<void> {
    await this.connection.hset(this.keys.undelivered, jobId, JSON.stringify({ bot: this.botId, platform, at: now }));
  }

  /** Whether another bot owns or shows the job, without changing anything. */
  peek(jobId: string): Promise<ClaimOutcome> {
    return this.run(jobId, 'peek');
  }

  /** Takes over a job still queued or running whose owner is gone: `adopted` when this bot now owns it. */
  adopt(jobId: string): Promise<ClaimOutcome> {
    return this.run(jobId, 'adopt');
  }

  /** Claims showing a job's end: `claimed` when this bot, and no other, shows it now. */
  claim(jobId: string): Promise<ClaimOutcome> {
    return this.run(jobId, 'claim');
  }

  /** Records that the job's end was shown (or that nobody can show it): no bot claims it again. */
  async done(jobId: string): Promise<void> {
    await this.connection.multi().hdel(this.keys.undelivered, jobId).del(this.keys.delivering(jobId)).exec();
  }

  /**
   * Gives up owning these jobs while this bot lives on a little (a graceful stop): any bot serving
   * their platform may adopt them at once. Returns how many this bot owned.
   */
  async release(jobIds: string[]): Promise<number> {
    if (jobIds.length === 0) return 0;
    return Number(await this.connection.imagineReleaseDelivery!(this.keys.undelivered, this.botId, ...jobIds));
  }

  /** Jobs of these platforms whose owner is gone (or is this bot), for this bot to adopt; at most `max`. */
  async orphans(platforms: string[], max = 100): Promise<string[]> {
    if (platforms.length === 0) return [];
    return ((await this.connection.imagineOrphans!(this.keys.undelivered, this.botId, this.keys.botPrefix, max, ...platforms)) as unknown[]).map(String);
  }

  private async run(jobId: string, mode: ClaimMode): Promise<ClaimOutcome> {
    const reply = await this.connection.imagineClaimDelivery!(this.keys.undelivered, this.keys.delivering(jobId), jobId, this.botId, mode, this.timings.leaseMs, this.keys.botPrefix);
    return String(reply) as ClaimOutcome;
  }
}
