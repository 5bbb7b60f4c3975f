/** Small, pure presentation helpers (no DOM). */

/** "4 s ago", "3 min ago", "2 h ago", then the date; `now` is passed in so one render agrees with itself. */
export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return '—';
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toISOString().slice(0, 10);
}

/** "in 12 s" / "in 3 min" for a moment ahead; "now" once passed. */
export function until(iso: string, now: number): string {
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  if (seconds <= 0) return 'now';
  if (seconds < 60) return `in ${seconds} s`;
  if (seconds < 3600) return `in ${Math.floor(seconds / 60)} min`;
  return `in ${Math.floor(seconds / 3600)} h`;
}

export function percent(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  return `${Number.isInteger(value) ? value : value.toFixed(1)}%`;
}

/** The enum's words for people: FORCED_OPEN -> "FORCED OPEN". */
export function words(value: string): string {
  return value.replace(/_/g, ' ');
}

/** Points of an SVG polyline for `values` in 0..100 over a width x height box; nulls draw as 0. */
export function sparklinePoints(values: Array<number | null>, width: number, height: number, slots: number): string {
  const step = slots > 1 ? width / (slots - 1) : width;
  const offset = slots - values.length;
  return values
    .map((v, i) => {
      const x = (offset + i) * step;
      const y = height - (Math.min(100, Math.max(0, v ?? 0)) / 100) * (height - 2) - 1;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}
