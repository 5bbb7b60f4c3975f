/**
 * Evaluations counted per flag, outcome and reason, as plain numbers the evaluation path adds
 * to (one map lookup and one increment); a Prometheus scrape reads them (src/metrics/).
 * Unknown flag names are one total, never a series each: callers choose those names.
 */
import { EVALUATION_REASONS, type EvaluationReason, type FlagEvaluation } from './engine.js';

/** Slots per flag: every reason, enabled or not. */
const SLOTS = EVALUATION_REASONS.length * 2;

function reasonIndex(reason: EvaluationReason): number {
  switch (reason) {
    case 'DISABLED':
      return 0;
    case 'STATIC':
      return 1;
    case 'TARGETING_MATCH':
      return 2;
    case 'SPLIT':
      return 3;
    case 'RANDOM':
      return 4;
    case 'DEFAULT':
      return 5;
    case 'FLAG_NOT_FOUND':
      return 6;
  }
}

export interface FlagEvaluationTally {
  flag: string;
  enabled: boolean;
  reason: EvaluationReason;
  count: number;
}

export class FlagEvaluationCounts {
  private readonly byFlag = new Map<string, Float64Array>();
  /** Evaluations of names that are no flag. */
  notFound = 0;

  count(evaluation: FlagEvaluation): void {
    if (evaluation.reason === 'FLAG_NOT_FOUND') {
      this.notFound++;
      return;
    }
    let slots = this.byFlag.get(evaluation.flag);
    if (slots === undefined) {
      slots = new Float64Array(SLOTS);
      this.byFlag.set(evaluation.flag, slots);
    }
    slots[reasonIndex(evaluation.reason) * 2 + (evaluation.enabled ? 1 : 0)]!++;
  }

  /** A flag's counters, indexed by outcome slot (see `outcomeSlot`); created on first use. */
  slotsOf(flag: string): Float64Array {
    let slots = this.byFlag.get(flag);
    if (slots === undefined) {
      slots = new Float64Array(SLOTS);
      this.byFlag.set(flag, slots);
    }
    return slots;
  }

  /** Counts one decision given as its outcome slot; the flag exists. */
  countSlot(flag: string, slot: number): void {
    this.slotsOf(flag)[slot]!++;
  }

  /** Every non-zero (flag, enabled, reason) total. */
  tallies(): FlagEvaluationTally[] {
    const out: FlagEvaluationTally[] = [];
    for (const [flag, slots] of this.byFlag) {
      for (let i = 0; i < SLOTS; i++) {
        const count = slots[i]!;
        if (count > 0) out.push({ flag, enabled: (i & 1) === 1, reason: EVALUATION_REASONS[i >> 1]!, count });
      }
    }
    return out;
  }
}
