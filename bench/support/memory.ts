/** Memory figures after a forced collection (when the process has --expose-gc). */
import { collectGarbage } from './stats.js';

export interface MemorySample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** Whether a full GC ran first; without it heap figures include garbage. */
  gc: boolean;
}

export async function memorySample(): Promise<MemorySample> {
  const gc = await collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, gc };
}
