/**
 * A minimal {@link GenerationService} that records what it is asked and admits everything, for
 * dispatch tests that must not depend on the queue. Owner checks mirror the real service's rule:
 * a job may be cancelled by its owner or an admin.
 */
import { ErrorCode, JobError } from '../../src/errors.js';
import type { VariationStrength } from '../../src/engine/engine.js';
import type { GenerationService, ImagineParameters, InfoSnapshot, JobListener, JobRecord, JobTicket, MessageReference, Requester, DeliveryOptions } from '../../src/service/types.js';

export interface RecordedCall {
  method: string;
  requester: Requester;
  args: unknown[];
}

export class RecordingGenerationService implements GenerationService {
  readonly calls: RecordedCall[] = [];
  readonly jobs = new Map<string, JobRecord>();
  private counter = 0;
  /** Thrown by the next call when set. */
  failNext: unknown;
  /** `platform/command` for every counted command. */
  readonly counted: string[] = [];

  countCommand(platform: string, command: string): void {
    this.counted.push(`${platform}/${command}`);
  }

  private check(method: string, requester: Requester, args: unknown[]): void {
    this.calls.push({ method, requester, args });
    if (this.failNext !== undefined) {
      const error = this.failNext;
      this.failNext = undefined;
      throw error;
    }
  }

  private admit(kind: JobRecord['kind'], requester: Requester, parameters: ImagineParameters, extra: Partial<JobRecord> = {}): JobTicket {
    this.counter += 1;
    const job: JobRecord = { id: `job${this.counter}`, kind, status: 'queued', requester, parameters, seeds: [1, 2, 3, 4], width: 32, height: 32, engine: 'recording', createdAt: this.counter, ...extra };
    this.jobs.set(job.id, job);
    return { job, position: this.counter, etaMs: 10_000 * this.counter };
  }

  private existing(jobId: string): JobRecord {
    const job = this.jobs.get(jobId);
    if (!job) throw new JobError(ErrorCode.JobNotFound, 'That job no longer exists.', jobId);
    return job;
  }

  async imagine(requester: Requester, parameters: ImagineParameters, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket> {
    this.check('imagine', requester, [parameters, listener, options]);
    return this.admit('imagine', requester, parameters);
  }

  async upscale(requester: Requester, jobId: string, index: number, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket> {
    this.check('upscale', requester, [jobId, index, listener, options]);
    return this.admit('upscale', requester, this.existing(jobId).parameters, { parent: { jobId, index } });
  }

  async vary(requester: Requester, jobId: string, index: number, strength: VariationStrength, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket> {
    this.check('vary', requester, [jobId, index, strength, listener, options]);
    return this.admit('variation', requester, this.existing(jobId).parameters, { parent: { jobId, index }, strength });
  }

  async reroll(requester: Requester, jobId: string, listener: JobListener, options?: DeliveryOptions): Promise<JobTicket> {
    this.check('reroll', requester, [jobId, listener, options]);
    return this.admit('reroll', requester, this.existing(jobId).parameters);
  }

  async cancel(requester: Requester, jobId: string): Promise<JobRecord> {
    this.check('cancel', requester, [jobId]);
    const job = this.existing(jobId);
    const owner = job.requester.platform === requester.platform && job.requester.userId === requester.userId;
    if (!owner && !requester.isAdmin) throw new JobError(ErrorCode.NotPermitted, 'Only the person who started a job (or an admin) can cancel it.', jobId);
    job.status = 'cancelled';
    return job;
  }

  async info(requester: Requester): Promise<InfoSnapshot> {
    this.check('info', requester, []);
    const mine = [...this.jobs.values()].filter((job) => job.requester.userId === requester.userId && job.status === 'queued');
    return {
      requester,
      running: [],
      queued: mine.map((job, index) => ({ job, position: index + 1 })),
      limits: { ratePerMinute: 10, burst: 3, maxRunning: 1, maxQueued: 5, tokensLeft: 2, nextTokenInMs: 0 },
      queueLength: this.jobs.size,
      slots: 1,
      engine: 'recording engine',
      averageJobMs: 0,
    };
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.jobs.get(jobId);
  }

  async attachMessage(jobId: string, message: MessageReference): Promise<void> {
    this.existing(jobId).message = message;
  }

  async shutdown(): Promise<void> {}
}
