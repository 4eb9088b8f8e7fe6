/**
 * Fairness: one heavy user queues 20 jobs, then 10 light users each queue one, arriving one per
 * job duration while the heavy backlog runs (fake engine, fixed job time, one slot). Reports the
 * light users' waits, in job durations, for the service's fair queue and for a plain FIFO p-queue.
 *
 *   npm run bench -- fairness [--job-ms 200] [--heavy 20] [--light 10] [--slots 1]
 *
 * With several slots the heavy user may run that many jobs at once (as a fast GPU would let it).
 */
import PQueue from 'p-queue';
import { loadConfig } from '../src/config/config.js';
import { composeGrid } from '../src/image/grid.js';
import { createGenerationService } from '../src/service/generation-service.js';
import type { ImagineParameters, JobListener, JobRecord } from '../src/service/types.js';
import { FakeEngine } from '../test/fakes/fake-engine.js';
import { option, percentile, round } from './run.js';

interface Scenario {
  jobMs: number;
  slots: number;
  heavy: number;
  light: number;
}

interface Outcome {
  /** Light users' waits from command to start, in job durations. */
  lightWaits: number[];
  /** Measured mean run time of a job, in ms. */
  jobMs: number;
  /** When the heavy user's last job finished, in job durations from the start. */
  heavyDone: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const parameters = (prompt: string, seed: number): ImagineParameters => ({ prompt, aspectRatio: '1:1', seed, chaos: 0 });
const steps = 4;

/** The service's queue: per-user lanes, fair pick at every free slot. */
async function fairQueue(scenario: Scenario): Promise<Outcome> {
  const engine = new FakeEngine({ steps, stepDelayMs: scenario.jobMs / steps });
  const config = loadConfig({ storeUrl: 'memory://', logLevel: 'silent', gpuSlots: scenario.slots }, {}, false);
  const service = await createGenerationService({
    config,
    engine,
    // The heavy user may queue the whole backlog at once.
    limitsFor: (requester) => (requester.userId === 'heavy' ? { maxQueued: scenario.heavy, burst: scenario.heavy, ratePerMinute: 10_000, maxRunning: scenario.slots } : undefined),
  });
  const finished: JobRecord[] = [];
  const all: Array<Promise<void>> = [];
  const listener = (): JobListener => {
    let done!: () => void;
    all.push(new Promise<void>((resolve) => (done = resolve)));
    return {
      completed: ({ job }) => {
        finished.push(job);
        done();
      },
      failed: ({ error }) => {
        done();
        throw new Error(`a benchmark job failed: ${error.message}`);
      },
    };
  };
  const t0 = Date.now();
  for (let index = 0; index < scenario.heavy; index += 1) await service.imagine({ platform: 'bench', userId: 'heavy' }, parameters(`heavy ${index}`, index), listener());
  for (let index = 0; index < scenario.light; index += 1) {
    await sleep(t0 + ((index + 0.5) * scenario.jobMs) / scenario.slots - Date.now());
    await service.imagine({ platform: 'bench', userId: `light-${index}` }, parameters(`light ${index}`, 100 + index), listener());
  }
  await Promise.all(all);
  await service.shutdown(0);
  const jobMs = mean(finished.map((job) => job.finishedAt! - job.startedAt!));
  const light = finished.filter((job) => job.requester.userId !== 'heavy');
  const heavyDone = Math.max(...finished.filter((job) => job.requester.userId === 'heavy').map((job) => job.finishedAt!)) - t0;
  return { lightWaits: light.map((job) => (job.startedAt! - job.createdAt) / jobMs), jobMs, heavyDone: heavyDone / jobMs };
}

/** The baseline: every job into one FIFO p-queue in arrival order. */
async function fifoQueue(scenario: Scenario): Promise<Outcome> {
  const engine = new FakeEngine({ steps, stepDelayMs: scenario.jobMs / steps });
  const queue = new PQueue({ concurrency: scenario.slots });
  const size = engine.capabilities.sizes['1:1']!;
  const runs: Array<{ user: string; createdAt: number; startedAt: number; finishedAt: number }> = [];
  const jobs: Array<Promise<void>> = [];
  const submit = (user: string, prompt: string, seed: number): void => {
    const createdAt = Date.now();
    jobs.push(queue.add(async () => {
      const startedAt = Date.now();
      // The same work as a service job: four images, then the grid.
      const result = await engine.generate({ prompt, width: size.width, height: size.height, seeds: [seed, seed + 1, seed + 2, seed + 3] });
      await composeGrid(result.images.map((image) => image.image));
      runs.push({ user, createdAt, startedAt, finishedAt: Date.now() });
    }));
  };
  const t0 = Date.now();
  for (let index = 0; index < scenario.heavy; index += 1) submit('heavy', `heavy ${index}`, index);
  for (let index = 0; index < scenario.light; index += 1) {
    await sleep(t0 + ((index + 0.5) * scenario.jobMs) / scenario.slots - Date.now());
    submit(`light-${index}`, `light ${index}`, 100 + index);
  }
  await Promise.all(jobs);
  const jobMs = mean(runs.map((job) => job.finishedAt - job.startedAt));
  const light = runs.filter((job) => job.user !== 'heavy');
  const heavyDone = Math.max(...runs.filter((job) => job.user === 'heavy').map((job) => job.finishedAt)) - t0;
  return { lightWaits: light.map((job) => (job.startedAt - job.createdAt) / jobMs), jobMs, heavyDone: heavyDone / jobMs };
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
}

function summary(outcome: Outcome): Record<string, number> {
  return {
    lightMedianWaitJobs: round(percentile(outcome.lightWaits, 50)),
    lightMaxWaitJobs: round(Math.max(...outcome.lightWaits)),
    heavyLastDoneJobs: round(outcome.heavyDone, 1),
    measuredJobMs: round(outcome.jobMs, 1),
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const scenario: Scenario = {
    jobMs: Number(option(args, 'job-ms') ?? 200),
    heavy: Number(option(args, 'heavy') ?? 20),
    light: Number(option(args, 'light') ?? 10),
    slots: Number(option(args, 'slots') ?? 1),
  };
  const fair = summary(await fairQueue(scenario));
  console.log(`fair queue: light users waited median ${fair.lightMedianWaitJobs}, max ${fair.lightMaxWaitJobs} job durations`);
  const fifo = summary(await fifoQueue(scenario));
  console.log(`FIFO p-queue: light users waited median ${fifo.lightMedianWaitJobs}, max ${fifo.lightMaxWaitJobs} job durations`);
  return {
    benchmark: 'fairness',
    engine: 'FakeEngine (test/fakes/fake-engine.ts), fixed step time',
    ...scenario,
    arrivals: 'heavy queues all jobs at t=0; light user i queues one at t=(i+0.5)·job/slots',
    fair,
    fifo,
    target: { lightMedianWaitJobs: 1.5 },
    pass: fair.lightMedianWaitJobs! <= 1.5,
  };
}
