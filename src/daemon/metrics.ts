/**
 * Prometheus text exposition format (version 0.0.4) writer. Pure: metric values in, text out.
 */
export interface Metric {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  /** One value, or labelled values. */
  value: number | Array<{ labels: Record<string, string>; value: number }>;
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
function escapeLabel(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export function renderMetrics(metrics: Metric[]): string {
  const lines: string[] = [];
  for (const m of metrics) {
    if (!NAME_RE.test(m.name)) throw new Error(`bad metric name ${m.name}`);
    lines.push(`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} ${m.type}`);
    if (typeof m.value === 'number') {
      lines.push(`${m.name} ${formatValue(m.value)}`);
      continue;
    }
    for (const s of m.value) {
      const labels = Object.entries(s.labels).map(([k, v]) => {
        if (!LABEL_RE.test(k)) throw new Error(`bad label name ${k}`);
        return `${k}="${escapeLabel(v)}"`;
      });
      lines.push(`${m.name}${labels.length ? `{${labels.join(',')}}` : ''} ${formatValue(s.value)}`);
    }
  }
  return lines.join('\n') + '\n';
}
