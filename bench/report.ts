/** The shape every benchmark under bench/ returns; bench/run.ts prints it and writes RESULTS.md. */
export interface BenchRow {
  case: string;
  value: number;
  unit: string;
  /** What the ratio is measured against, in the same run. */
  baseline: string;
  /** value / baseline value; below 1 is faster or smaller unless the unit says otherwise. */
  ratio: number;
  goal?: string;
  met?: boolean;
}

export interface BenchReport {
  name: string;
  rows: BenchRow[];
  notes?: string[];
}
