/**
 * The platform-free web pieces main.ts mounts in every mode: one node:http server with /healthz
 * and /metrics (the playground adds its routes to the same server).
 */
export { createHttpServer, healthAndMetrics, allowMethods, sendText } from './server.js';
export type { HealthCheck, HealthReport, HttpLogger, HttpServerHandle, HttpServerOptions, MetricsRenderer, RouteHandler } from './server.js';
export { serviceHealth, serviceMetrics } from './service-probes.js';
export type { ObservableService, ServiceGetter } from './service-probes.js';
export { formatPrometheus, histogramFrom, prometheusContentType } from './prometheus.js';
export type { HistogramSample, Labels, MetricFamily, Sample } from './prometheus.js';
