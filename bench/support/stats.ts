/**
 * Small statistics and formatting shared by the benchmarks. Percentiles use the nearest-rank
 * method on a sorted copy, so p99 of 5,000 samples is the 4,950th smallest, a value that
 * actually occurred.
 */

export function sortedCopy(values: ArrayLike<number>): number[] {
  return Array.from(values).sort((a, b) => a - b);
}

/** Nearest-rank percentile, `p` in [0, 100]; NaN for no samples. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: ArrayLike<number>): number {
  const sorted = sortedCopy(values);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return values.length === 0 ? Number.NaN : sum / values.length;
}

export function round(n: number, digits = 2): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** value / baseline, rounded; NaN when the baseline is zero or missing. */
export function ratio(value: number, baseline: number, digits = 3): number {
  return baseline === 0 || !Number.isFinite(baseline) ? Number.NaN : round(value / baseline, digits);
}

export const MB = 1024 * 1024;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Wall-clock epoch milliseconds with sub-millisecond resolution, comparable across processes. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Runs `global.gc` a few times when the process was started with --expose-gc. */
export async function collectGarbage(): Promise<boolean> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
  return true;
}
