/**
 * Bounded spinning in the WORKER hand-off (src/modules/runtime/spin-wait.ts): the policy with
 * an injected clock, then real workers whose calls are caught by the spin, in order, with both
 * event loops still turning.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { InMemoryModuleHost, loadModuleVersion, type LoadedModuleVersion } from '../../src/modules/runtime/index.js';
import { createSignals, LATE_FACTOR, LATE_TOLERATED, MAX_SKIP, MAX_STRETCH_MS, SIGNAL_TO_HOST, SpinWait, unconsumed, type SpinOutcome } from '../../src/modules/runtime/spin-wait.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/modules/', import.meta.url));
const SLOW = 30_000;

/** A clock that moves `step` ms on every read, so a spin ends after a known number of reads. */
function steppingClock(step: number, onRead?: (reads: number) => void): { now: () => number; reads: () => number; advance: (ms: number) => void } {
  let t = 0;
  let reads = 0;
  return {
    now: () => {
      reads++;
      onRead?.(reads);
      return (t += step);
    },
    reads: () => reads,
    advance: (ms) => {
      t += ms;
    },
  };
}

function manualLoop(): { onLoopTurn: (callback: () => void) => void; turn: () => void; pending: () => number } {
  let callbacks: (() => void)[] = [];
  return {
    onLoopTurn: (callback) => callbacks.push(callback),
    turn: () => {
      const due = callbacks;
      callbacks = [];
      for (const callback of due) callback();
    },
    pending: () => callbacks.length,
  };
}

describe('SpinWait', () => {
  it('is off with a budget of 0: it never spins, even for a message already there', () => {
    const signals = createSignals();
    Atomics.add(signals, SIGNAL_TO_HOST, 1);
    const clock = steppingClock(0.001);
    const spin = new SpinWait({ budgetMicros: 0, now: clock.now });
    expect(spin.enabled).toBe(false);
    expect(spin.wait(signals, SIGNAL_TO_HOST, 0)).toBe('off');
    expect(clock.reads()).toBe(0);
  });

  it('answers at once for a message posted and not yet taken, with one clock read (for the event-loop bound)', () => {
    const signals = createSignals();
    Atomics.add(signals, SIGNAL_TO_HOST, 2);
    const loop = manualLoop();
    const clock = steppingClock(0.001);
    const spin = new SpinWait({ budgetMicros: 50, now: clock.now, onLoopTurn: loop.onLoopTurn });
    expect(spin.wait(signals, SIGNAL_TO_HOST, 1)).toBe('arrived');
    expect(clock.reads()).toBe(1);
  });

  it('asks for an event-loop turn even with messages waiting, once the stretch is over', () => {
    const signals = createSignals();
    const loop = manualLoop();
    const clock = steppingClock(0.4);
    const spin = new SpinWait({ budgetMicros: 50, now: clock.now, onLoopTurn: loop.onLoopTurn });
    Atomics.add(signals, SIGNAL_TO_HOST, 100); // a side that keeps posting
    const outcomes = Array.from({ length: 5 }, (_, i) => spin.wait(signals, SIGNAL_TO_HOST, i));
    expect(outcomes).toEqual(['arrived', 'arrived', 'arrived', 'yield', 'yield']);
    loop.turn();
    expect(spin.wait(signals, SIGNAL_TO_HOST, 3)).toBe('arrived');
  });

  it('gives up after its budget, and counts the miss', () => {
    const signals = createSignals();
    const loop = manualLoop();
    const clock = steppingClock(0.01); // 10 us per read
    const spin = new SpinWait({ budgetMicros: 50, now: clock.now, onLoopTurn: loop.onLoopTurn });
    expect(spin.wait(signals, SIGNAL_TO_HOST, 0)).toBe('timedOut');
    // One read to start, then reads until 50 us have passed.
    expect(clock.reads()).toBe(6);
    expect(spin.misses).toBe(1);
  });

  it('backs off only when what a timed-out wait was for came much later, doubling the skips up to MAX_SKIP - 1', () => {
    const signals = createSignals();
    const loop = manualLoop();
    const clock = steppingClock(0.01);
    const spin = new SpinWait({ budgetMicros: 50, now: clock.now, onLoopTurn: loop.onLoopTurn });
    const budgetMs = 0.05;
    /** Waits (the loop turning between waits) until one spins and times out; what it waited for then arrives `afterMs` later. Returns the waits skipped before it. */
    let consumed = 0;
    const missThenArrive = (afterMs: number): number => {
      for (let skipped = 0; ; skipped++) {
        loop.turn();
        const outcome = spin.wait(signals, SIGNAL_TO_HOST, consumed);
        if (outcome === 'off') continue;
        expect(outcome).toBe('timedOut');
        clock.advance(afterMs);
        spin.arrivedLate();
        return skipped;
      }
    };
    expect(LATE_FACTOR).toBe(10);
    expect(LATE_TOLERATED).toBe(1);
    // Soon after the budget (the other side was asleep): never a back-off.
    expect(Array.from({ length: 5 }, () => missThenArrive(budgetMs * 5))).toEqual([0, 0, 0, 0, 0]);
    // Much later (a slow method): from the second in a row, 1, 3, 7, ... waits skipped, at most MAX_SKIP - 1.
    expect(Array.from({ length: 9 }, () => missThenArrive(budgetMs * 20))).toEqual([0, 0, 1, 3, 7, 15, 31, 63, MAX_SKIP - 1]);
    expect(spin.misses).toBe(14);
    // One that came soon starts the count over (after the skips already decided).
    expect(missThenArrive(budgetMs * 5)).toBe(63);
    expect([missThenArrive(budgetMs * 20), missThenArrive(budgetMs * 20), missThenArrive(budgetMs * 20)]).toEqual([0, 0, 1]);
    // So does a hit, and a message already there is taken even while backing off.
    Atomics.add(signals, SIGNAL_TO_HOST, 1);
    loop.turn();
    expect(spin.wait(signals, SIGNAL_TO_HOST, consumed)).toBe('arrived');
    consumed++;
    spin.settled();
    expect(spin.hits).toBe(1);
    expect(missThenArrive(budgetMs * 20)).toBe(0);
    // Without a timed-out wait before it, an arrival changes nothing.
    spin.arrivedLate();
    expect(missThenArrive(budgetMs * 20)).toBe(0);
  });

  it('asks for an event-loop turn after MAX_STRETCH_MS of waits without one', () => {
    const signals = createSignals();
    const loop = manualLoop();
    // 300 us per read; the other side posts on every third read, mid-spin.
    const clock = steppingClock(0.3, (reads) => {
      if (reads % 3 === 0) Atomics.add(signals, SIGNAL_TO_HOST, 1);
    });
    const spin = new SpinWait({ budgetMicros: 1000, now: clock.now, onLoopTurn: loop.onLoopTurn });
    expect(MAX_STRETCH_MS).toBe(1);
    expect(spin.wait(signals, SIGNAL_TO_HOST, 0)).toBe('arrived'); // the stretch begins (0.3 ms)
    expect(loop.pending()).toBe(1);
    expect(spin.wait(signals, SIGNAL_TO_HOST, 1)).toBe('arrived'); // begun at 1.2 ms: 0.9 ms in
    expect(spin.wait(signals, SIGNAL_TO_HOST, 2)).toBe('yield'); // 2.1 ms: 1.8 ms without a turn
    expect(spin.misses).toBe(0);
    loop.turn();
    expect(loop.pending()).toBe(0);
    expect(spin.wait(signals, SIGNAL_TO_HOST, 2)).toBe('arrived'); // a new stretch
    expect(loop.pending()).toBe(1);
  });

  it('compares the wrapping int32 counters by difference', () => {
    const signals = createSignals();
    Atomics.store(signals, SIGNAL_TO_HOST, 2 ** 31 - 1);
    expect(unconsumed(signals, SIGNAL_TO_HOST, 2 ** 31 - 1)).toBe(false);
    Atomics.add(signals, SIGNAL_TO_HOST, 1); // wraps to -2^31
    expect(Atomics.load(signals, SIGNAL_TO_HOST)).toBe(-(2 ** 31));
    expect(unconsumed(signals, SIGNAL_TO_HOST, 2 ** 31 - 1)).toBe(true);
    expect(unconsumed(signals, SIGNAL_TO_HOST, (2 ** 31 - 1 + 1) | 0)).toBe(false);
  });
});

describe('WORKER calls that wait awake', () => {
  const loaded: LoadedModuleVersion[] = [];
  afterAll(async () => {
    await Promise.all(loaded.map((v) => v.terminate()));
  });

  async function probe(host: InMemoryModuleHost, workerSpinMicros: number): Promise<LoadedModuleVersion> {
    const version = await loadModuleVersion({
      name: `probe_${workerSpinMicros}`,
      version: '1.0.0',
      dependencyNames: [],
      host,
      // A generous budget, so the hand-off is caught even on a loaded CI machine.
      limits: { workerSpinMicros },
      absolutePath: path.join(FIXTURES, 'good/spin_probe.js'),
    });
    loaded.push(version);
    return version;
  }

  function spinOf(version: LoadedModuleVersion): SpinWait {
    return (version as unknown as { spin: SpinWait }).spin;
  }

  it('takes the answers of sequential calls from the spin, each one right', async () => {
    const version = await probe(new InMemoryModuleHost(), 1000);
    for (let i = 0; i < 300; i++) expect(await version.call('echo', { i })).toEqual({ i });
    expect(spinOf(version).hits).toBeGreaterThan(0);
  }, SLOW);

  it('spins for nothing when spinning is off (0)', async () => {
    const version = await probe(new InMemoryModuleHost(), 0);
    for (let i = 0; i < 50; i++) expect(await version.call('echo', i)).toBe(i);
    expect(spinOf(version).hits).toBe(0);
    expect(spinOf(version).misses).toBe(0);
  }, SLOW);

  it('does not spin while calls overlap', async () => {
    const version = await probe(new InMemoryModuleHost(), 1000);
    const before = spinOf(version).hits + spinOf(version).misses;
    const answers = await Promise.all(Array.from({ length: 32 }, (_, i) => version.call('echo', i)));
    expect(answers).toEqual(Array.from({ length: 32 }, (_, i) => i));
    expect(spinOf(version).hits + spinOf(version).misses).toBe(before);
  }, SLOW);

  it('handles what the worker posted before the answer first, in order', async () => {
    const host = new InMemoryModuleHost();
    const version = await probe(host, 1000);
    for (let round = 0; round < 20; round++) {
      const seen = host.logs.length;
      expect(await version.call('chatty', 3)).toBe(3);
      expect(host.logs.slice(seen).map((l) => l.message)).toEqual(['line 0', 'line 1', 'line 2']);
    }
    expect(spinOf(version).hits).toBeGreaterThan(0);
  }, SLOW);

  it('keeps answering when module code bumps the shared counters past what was posted', async () => {
    const version = await probe(new InMemoryModuleHost(), 1000);
    for (let i = 0; i < 20; i++) expect(await version.call('echo', i)).toBe(i);
    // Both counters now say 1,000 more messages than either port holds: a wait that trusted
    // them would spin for ever on an empty port.
    expect(await version.call('desync', 1000)).toBe(1000);
    for (let i = 0; i < 200; i++) expect(await version.call('echo', { i })).toEqual({ i });
    expect(version.exit).toBeNull();
    // The host took the port's word for it and caught up with the counter (otherwise each
    // later wait would find "messages" that are not there and busy-loop until the loop's turn).
    const host = version as unknown as { signals: Int32Array; received: number };
    expect(unconsumed(host.signals, SIGNAL_TO_HOST, host.received)).toBe(false);
  }, SLOW);

  it("lets both event loops turn during a long run of calls (the module's timer, a host timer)", async () => {
    const version = await probe(new InMemoryModuleHost(), 1000);
    let hostTicks = 0;
    const hostTimer = setInterval(() => hostTicks++, 1);
    try {
      const workerTicks = (await version.call('ticks')) as number;
      const started = performance.now();
      let calls = 0;
      while (performance.now() - started < 100) {
        await version.call('echo', calls);
        calls++;
      }
      const workerTicksAfter = (await version.call('ticks')) as number;
      expect(spinOf(version).hits).toBeGreaterThan(0);
      // A 1 ms interval over 100 ms of calls: without the loop turns, neither would tick.
      expect(workerTicksAfter - workerTicks).toBeGreaterThanOrEqual(10);
      expect(hostTicks).toBeGreaterThanOrEqual(10);
    } finally {
      clearInterval(hostTimer);
    }
  }, SLOW);
});
