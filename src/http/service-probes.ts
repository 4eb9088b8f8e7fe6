/**
 * /healthz and /metrics for the generation service, read through a getter so that the web server
 * can start (and answer 503) before the model is loaded and the service exists.
 */
import { formatPrometheus } from './prometheus.js';
import type { HealthCheck, HealthReport, MetricsRenderer } from './server.js';

/** What the probes read from the service; the running generation service has all of it. */
export interface ObservableService {
  /** True once the model is loaded and the store is open. */
  ready?(): boolean;
  metrics?: { toPrometheus(): string };
}

/** The service now, or undefined while it is still being built. */
export type ServiceGetter = () => ObservableService | undefined;

/** Ready when the service exists and says it is ready; `extra` checks (e.g. adapters connected) must pass too. */
export function serviceHealth(getService: ServiceGetter, extra: Record<string, () => boolean> = {}): HealthCheck {
  return (): HealthReport => {
    const service = getService();
    const checks: Record<string, boolean> = { service: service !== undefined && (typeof service.ready === 'function' ? service.ready() : true) };
    for (const [name, check] of Object.entries(extra)) {
      try {
        checks[name] = check();
      } catch {
        checks[name] = false;
      }
    }
    return { ready: Object.values(checks).every(Boolean), checks };
  };
}

const startedAt = Date.now();

/** The service's own metrics (queue depth, durations, failures, commands) plus readiness and process gauges. */
export function serviceMetrics(getService: ServiceGetter): MetricsRenderer {
  return () => {
    const service = getService();
    const ready = service !== undefined && (typeof service.ready === 'function' ? service.ready() : true);
    const memory = process.memoryUsage();
    const own = formatPrometheus([
      { name: 'imagine_ready', help: 'Whether the model is loaded and the store is open (1) or not yet (0).', type: 'gauge', samples: [{ value: ready ? 1 : 0 }] },
      { name: 'imagine_process_uptime_seconds', help: 'Seconds since the process started serving.', type: 'gauge', samples: [{ value: Math.round((Date.now() - startedAt) / 1000) }] },
      { name: 'imagine_process_resident_memory_bytes', help: 'Resident memory of the process.', type: 'gauge', samples: [{ value: memory.rss }] },
      { name: 'imagine_process_heap_used_bytes', help: 'V8 heap in use.', type: 'gauge', samples: [{ value: memory.heapUsed }] },
    ]);
    return own + (service?.metrics ? service.metrics.toPrometheus() : '');
  };
}
