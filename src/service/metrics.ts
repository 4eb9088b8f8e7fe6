/**
 * Counters and histograms the /metrics endpoint reads. Plain numbers in memory; the
 * Prometheus text format is produced on demand by {@link ServiceMetrics.toPrometheus}.
 */

/** Upper bounds of the job duration histogram, in seconds. */
export const durationBucketsSeconds = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600] as const;

/** A histogram of durations in seconds. */
export interface DurationHistogram {
  /** Cumulative counts per upper bound (`le`), including `+Inf`. */
  buckets: Array<{ le: number; count: number }>;
  count: number;
  sumSeconds: number;
}

/** A read-only view of everything counted. */
export interface MetricsSnapshot {
  queueDepth: number;
  running: number;
  slots: number;
  jobsStarted: Record<string, number>;
  jobsCompleted: Record<string, number>;
  failures: Record<string, number>;
  commands: Array<{ platform: string; command: string; count: number }>;
  durations: Record<string, DurationHistogram>;
  rejections: Record<string, number>;
}

/** What the service counts. Gauges are read live from the service. */
export class ServiceMetrics {
  private readonly gauges: () => { queueDepth: number; running: number; slots: number };
  private readonly started = new Map<string, number>();
  private readonly completed = new Map<string, number>();
  private readonly failed = new Map<string, number>();
  private readonly rejected = new Map<string, number>();
  private readonly commandCounts = new Map<string, { platform: string; command: string; count: number }>();
  private readonly histograms = new Map<string, { counts: number[]; count: number; sum: number }>();

  constructor(gauges: () => { queueDepth: number; running: number; slots: number }) {
    this.gauges = gauges;
  }

  /** Jobs waiting now. */
  get queueDepth(): number {
    return this.gauges().queueDepth;
  }

  /** Jobs running now. */
  get running(): number {
    return this.gauges().running;
  }

  /** Counts a command or button use by platform; adapters call this for every interaction. */
  countCommand(platform: string, command: string): void {
    const key = `${platform}\u0000${command}`;
    const entry = this.commandCounts.get(key) ?? { platform, command, count: 0 };
    entry.count += 1;
    this.commandCounts.set(key, entry);
  }

  /** @internal */
  jobStarted(kind: string): void {
    increment(this.started, kind);
  }

  /** @internal Records a finished job's run time. */
  jobCompleted(kind: string, durationMs: number): void {
    increment(this.completed, kind);
    const histogram = this.histograms.get(kind) ?? { counts: durationBucketsSeconds.map(() => 0), count: 0, sum: 0 };
    const seconds = durationMs / 1000;
    durationBucketsSeconds.forEach((bound, index) => {
      if (seconds <= bound) histogram.counts[index]! += 1;
    });
    histogram.count += 1;
    histogram.sum += seconds;
    this.histograms.set(kind, histogram);
  }

  /** @internal */
  jobFailed(code: string): void {
    increment(this.failed, code);
  }

  /** @internal A request refused by a limit (or shutdown) before it was queued. */
  requestRejected(code: string): void {
    increment(this.rejected, code);
  }

  snapshot(): MetricsSnapshot {
    const durations: Record<string, DurationHistogram> = {};
    for (const [kind, histogram] of this.histograms) {
      durations[kind] = {
        buckets: [...durationBucketsSeconds.map((le, index) => ({ le, count: histogram.counts[index]! })), { le: Number.POSITIVE_INFINITY, count: histogram.count }],
        count: histogram.count,
        sumSeconds: histogram.sum,
      };
    }
    return {
      ...this.gauges(),
      jobsStarted: Object.fromEntries(this.started),
      jobsCompleted: Object.fromEntries(this.completed),
      failures: Object.fromEntries(this.failed),
      rejections: Object.fromEntries(this.rejected),
      commands: [...this.commandCounts.values()].map((entry) => ({ ...entry })),
      durations,
    };
  }

  /** The Prometheus text exposition format (version 0.0.4). */
  toPrometheus(): string {
    const snapshot = this.snapshot();
    const lines: string[] = [];
    const family = (name: string, type: string, help: string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family('imagine_queue_depth', 'gauge', 'Jobs waiting for a slot.');
    lines.push(`imagine_queue_depth ${snapshot.queueDepth}`);
    family('imagine_jobs_running', 'gauge', 'Jobs running now.');
    lines.push(`imagine_jobs_running ${snapshot.running}`);
    family('imagine_slots', 'gauge', 'Jobs that may run at once.');
    lines.push(`imagine_slots ${snapshot.slots}`);
    family('imagine_jobs_started_total', 'counter', 'Jobs started, by kind.');
    for (const [kind, count] of Object.entries(snapshot.jobsStarted)) lines.push(`imagine_jobs_started_total{kind="${escape(kind)}"} ${count}`);
    family('imagine_jobs_completed_total', 'counter', 'Jobs completed, by kind.');
    for (const [kind, count] of Object.entries(snapshot.jobsCompleted)) lines.push(`imagine_jobs_completed_total{kind="${escape(kind)}"} ${count}`);
    family('imagine_job_failures_total', 'counter', 'Jobs that failed, by error code.');
    for (const [code, count] of Object.entries(snapshot.failures)) lines.push(`imagine_job_failures_total{code="${escape(code)}"} ${count}`);
    family('imagine_requests_rejected_total', 'counter', 'Requests refused before queueing, by error code.');
    for (const [code, count] of Object.entries(snapshot.rejections)) lines.push(`imagine_requests_rejected_total{code="${escape(code)}"} ${count}`);
    family('imagine_commands_total', 'counter', 'Commands and buttons used, by platform and command.');
    for (const entry of snapshot.commands) lines.push(`imagine_commands_total{platform="${escape(entry.platform)}",command="${escape(entry.command)}"} ${entry.count}`);
    family('imagine_job_duration_seconds', 'histogram', 'Run time of completed jobs, by kind.');
    for (const [kind, histogram] of Object.entries(snapshot.durations)) {
      for (const bucket of histogram.buckets) lines.push(`imagine_job_duration_seconds_bucket{kind="${escape(kind)}",le="${bucket.le === Number.POSITIVE_INFINITY ? '+Inf' : bucket.le}"} ${bucket.count}`);
      lines.push(`imagine_job_duration_seconds_sum{kind="${escape(kind)}"} ${histogram.sumSeconds}`);
      lines.push(`imagine_job_duration_seconds_count{kind="${escape(kind)}"} ${histogram.count}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

function increment(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function escape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
