/**
 * HTTP load with autocannon, the same client settings for every target: 32 connections, no
 * pipelining, a warm-up run (JIT, Yoga's parse/validate caches) that is thrown away, then the
 * measured run. A response is only counted as good when its body is exactly the one checked
 * beforehand (`expectBody`), so a fast stream of errors cannot pass as throughput.
 */
import autocannon from 'autocannon';

export const HTTP_CONNECTIONS = 32;
export const HTTP_DURATION_S = 10;
export const HTTP_WARMUP_S = 3;

export interface LoadResult {
  /** Mean of the per-second request counts, as autocannon reports it. */
  rps: number;
  total: number;
  durationS: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  mismatches: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

export interface LoadOptions {
  url: string;
  body?: string;
  headers?: Record<string, string>;
  durationS?: number;
  connections?: number;
  expectBody?: string;
  /** Varies each request (autocannon's `requests`); cannot be combined with expectBody. */
  requests?: autocannon.Request[];
}

export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const opts: autocannon.Options = {
    url: options.url,
    method: 'POST',
    connections: options.connections ?? HTTP_CONNECTIONS,
    pipelining: 1,
    duration: options.durationS ?? HTTP_DURATION_S,
    headers: { 'content-type': 'application/json', ...options.headers },
    ...(options.body !== undefined ? { body: options.body } : {}),
    ...(options.expectBody !== undefined ? { expectBody: options.expectBody } : {}),
    ...(options.requests ? { requests: options.requests } : {}),
  };
  return new Promise((resolve, reject) => {
    autocannon(opts, (error, result) => {
      if (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      resolve({
        rps: result.requests.average,
        total: result.requests.total,
        durationS: result.duration,
        errors: result.errors,
        timeouts: result.timeouts,
        non2xx: result.non2xx,
        mismatches: result.mismatches,
        latencyP50Ms: result.latency.p50,
        latencyP99Ms: result.latency.p99,
      });
    });
  });
}

/** A warm-up run (discarded) followed by the measured one. */
export async function warmAndLoad(options: LoadOptions): Promise<LoadResult> {
  await runLoad({ ...options, durationS: HTTP_WARMUP_S });
  return runLoad(options);
}

/** Errors, non-2xx and body mismatches of a run, for the notes. */
export function describeFailures(result: LoadResult): string {
  return `${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx, ${result.mismatches} body mismatches`;
}

export function isClean(result: LoadResult): boolean {
  return result.errors === 0 && result.non2xx === 0 && result.mismatches === 0;
}
