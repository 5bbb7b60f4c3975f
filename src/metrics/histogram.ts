/**
 * Duration histograms for hot paths: fixed bucket bounds, plain typed arrays, no labels and no
 * allocation per observation. A scrape turns them into Prometheus histogram series
 * (prometheus.ts); the hot path only finds a bucket (a short linear scan) and adds.
 */

/** Upper bounds in seconds, as Prometheus clients' defaults plus the sub-millisecond range. */
export const DURATION_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
const BOUNDS_MS = DURATION_BUCKETS_SECONDS.map((s) => s * 1000);
/** Bucket slots per series: one per bound plus the +Inf bucket. */
export const BUCKET_SLOTS = BOUNDS_MS.length + 1;

/** The slot (0 .. BUCKET_SLOTS - 1, the last one +Inf) of a duration in milliseconds. */
function bucketOf(durationMs: number): number {
  let i = 0;
  while (i < BOUNDS_MS.length && durationMs > BOUNDS_MS[i]!) i++;
  return i;
}

/** `series` independent histograms side by side (one per call kind, say). */
export class DurationHistograms {
  /** counts[series * BUCKET_SLOTS + i]: observations in bucket i alone (not cumulative). */
  readonly counts: Float64Array;
  /** Sum of observed durations per series, in milliseconds. */
  readonly sumsMs: Float64Array;

  constructor(readonly series: number) {
    this.counts = new Float64Array(series * BUCKET_SLOTS);
    this.sumsMs = new Float64Array(series);
  }

  observe(series: number, durationMs: number): void {
    this.counts[series * BUCKET_SLOTS + bucketOf(durationMs)]!++;
    this.sumsMs[series]! += durationMs > 0 ? durationMs : 0;
  }

  count(series: number): number {
    let n = 0;
    const base = series * BUCKET_SLOTS;
    for (let i = 0; i < BUCKET_SLOTS; i++) n += this.counts[base + i]!;
    return n;
  }
}

/**
 * Histograms whose counts are exact but whose durations may come from a sample of the calls.
 * Every call adds 1 to its series' exact count (`record`); a call that was timed also adds its
 * duration, with a weight: 1 when every call (or this one regardless) is timed, N when it
 * stands for the N calls of a 1-in-N sample. `estimate()` is the histogram to expose: per
 * series `count` is the exact count, the buckets are the weighted sample's cumulative fractions
 * times that count (rounded, so integers, monotonic, and +Inf equal to the count) and the sum is
 * the count times the weighted sample's mean. A series whose calls were all timed with weight 1
 * comes out exactly as observed.
 *
 * A series with calls but no timed call yet (a rare kind, between samples) borrows the weighted
 * distribution of the `lenders` series together; with nothing to borrow either (every timed
 * call still in flight), its calls show in the lowest bucket with a sum of 0 until a timed one
 * settles.
 */
export class SampledDurationHistograms {
  /** Calls per series, every one of them. */
  readonly totals: Float64Array;
  /** Weighted timed calls per bucket (not cumulative), as `DurationHistograms.counts`. */
  readonly weights: Float64Array;
  /** Weighted sum of timed durations per series, in milliseconds. */
  readonly weightedSumsMs: Float64Array;

  constructor(
    readonly series: number,
    private readonly lenders: readonly number[],
  ) {
    this.totals = new Float64Array(series);
    this.weights = new Float64Array(series * BUCKET_SLOTS);
    this.weightedSumsMs = new Float64Array(series);
  }

  /** One call of `series`; `weight` 0: not timed (`durationMs` ignored). */
  record(series: number, durationMs: number, weight: number): void {
    this.totals[series]!++;
    if (weight === 0) return;
    this.weights[series * BUCKET_SLOTS + bucketOf(durationMs)]! += weight;
    this.weightedSumsMs[series]! += durationMs > 0 ? durationMs * weight : 0;
  }

  /** The exposed histograms (see the class comment); a new object each time, for a scrape. */
  estimate(): DurationHistograms {
    const out = new DurationHistograms(this.series);
    const lent = new Float64Array(BUCKET_SLOTS);
    let lentSum = 0;
    for (const k of this.lenders) {
      for (let i = 0; i < BUCKET_SLOTS; i++) lent[i]! += this.weights[k * BUCKET_SLOTS + i]!;
      lentSum += this.weightedSumsMs[k]!;
    }
    for (let k = 0; k < this.series; k++) {
      const count = this.totals[k]!;
      if (count === 0) continue;
      let from: Float64Array = this.weights;
      let base = k * BUCKET_SLOTS;
      let sum = this.weightedSumsMs[k]!;
      let weight = 0;
      for (let i = 0; i < BUCKET_SLOTS; i++) weight += from[base + i]!;
      if (weight === 0) {
        from = lent;
        base = 0;
        sum = lentSum;
        for (let i = 0; i < BUCKET_SLOTS; i++) weight += lent[i]!;
      }
      const at = k * BUCKET_SLOTS;
      if (weight === 0) {
        out.counts[at] = count;
        continue;
      }
      if (weight === count) {
        // Every call timed with weight 1 (or weights that add up exactly): as observed.
        for (let i = 0; i < BUCKET_SLOTS; i++) out.counts[at + i] = from[base + i]!;
        out.sumsMs[k] = sum;
        continue;
      }
      let cumulative = 0;
      let previous = 0;
      for (let i = 0; i < BUCKET_SLOTS; i++) {
        cumulative += from[base + i]!;
        const scaled = i === BUCKET_SLOTS - 1 ? count : Math.min(count, Math.round((count * cumulative) / weight));
        out.counts[at + i] = scaled - previous;
        previous = scaled;
      }
      out.sumsMs[k] = (count * sum) / weight;
    }
    return out;
  }
}
