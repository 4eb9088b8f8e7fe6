/**
 * The Prometheus text exposition format (version 0.0.4), written by hand so that /metrics needs
 * no client library: metric families in, text out.
 */

/** The content type Prometheus scrapers expect. */
export const prometheusContentType = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Record<string, string | number>;

/** One value of a counter or gauge. */
export interface Sample {
  labels?: Labels;
  value: number;
}

/** One labelled histogram: cumulative counts per upper bound, plus sum and count. */
export interface HistogramSample {
  labels?: Labels;
  /** Upper bounds (ascending, without +Inf) and how many observations were at most each. */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

export type MetricFamily =
  | { name: string; help: string; type: 'counter' | 'gauge'; samples: Sample[] }
  | { name: string; help: string; type: 'histogram'; samples: HistogramSample[] };

const namePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelPattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Writes metric families in the text exposition format, one `# HELP` and `# TYPE` each. */
export function formatPrometheus(families: MetricFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    if (!namePattern.test(family.name)) throw new Error(`Invalid metric name ${JSON.stringify(family.name)}`);
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    if (family.type === 'histogram') {
      for (const sample of family.samples) {
        for (const bucket of sample.buckets) {
          lines.push(`${family.name}_bucket${formatLabels({ ...sample.labels, le: formatNumber(bucket.le) })} ${formatNumber(bucket.count)}`);
        }
        lines.push(`${family.name}_bucket${formatLabels({ ...sample.labels, le: '+Inf' })} ${formatNumber(sample.count)}`);
        lines.push(`${family.name}_sum${formatLabels(sample.labels)} ${formatNumber(sample.sum)}`);
        lines.push(`${family.name}_count${formatLabels(sample.labels)} ${formatNumber(sample.count)}`);
      }
    } else {
      for (const sample of family.samples) lines.push(`${family.name}${formatLabels(sample.labels)} ${formatNumber(sample.value)}`);
    }
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/**
 * Turns raw observations into cumulative histogram buckets; for callers that keep a list of
 * durations rather than counts.
 */
export function histogramFrom(values: readonly number[], bounds: readonly number[], labels?: Labels): HistogramSample {
  const sorted = [...bounds].sort((a, b) => a - b);
  const buckets = sorted.map((le) => ({ le, count: values.filter((value) => value <= le).length }));
  const sum = values.reduce((total, value) => total + value, 0);
  return { ...(labels ? { labels } : {}), buckets, sum, count: values.length };
}

function formatLabels(labels: Labels | undefined): string {
  if (!labels) return '';
  const entries = Object.entries(labels);
  if (!entries.length) return '';
  const parts = entries.map(([key, value]) => {
    if (!labelPattern.test(key)) throw new Error(`Invalid label name ${JSON.stringify(key)}`);
    return `${key}="${escapeLabelValue(String(value))}"`;
  });
  return `{${parts.join(',')}}`;
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
