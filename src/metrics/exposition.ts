/**
 * A direct writer of Prometheus text (format 0.0.4) for families with one series per breaker
 * or flag. prom-client formats a sample by hashing and escaping its label object, several
 * microseconds a line; a scrape of 1,000 breakers holds ~80,000 lines. Here each entity's
 * label text is built once per scrape and lines are concatenated.
 */

export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** `a="x",b="y"` from pairs (values escaped). */
export function labelText(pairs: ReadonlyArray<readonly [string, string]>): string {
  let out = '';
  for (const [name, value] of pairs) out += `${out === '' ? '' : ','}${name}="${escapeLabelValue(value)}"`;
  return out;
}

export class ExpositionWriter {
  private out = '';

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
    this.out += `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
  }

  /** `labels` as from `labelText` (may be empty). */
  sample(name: string, labels: string, value: number): void {
    this.out += labels === '' ? `${name} ${formatValue(value)}\n` : `${name}{${labels}} ${formatValue(value)}\n`;
  }

  /** A whole sample line, newline included, already formatted (finite values only). */
  line(text: string): void {
    this.out += text;
  }

  text(): string {
    return this.out;
  }
}
