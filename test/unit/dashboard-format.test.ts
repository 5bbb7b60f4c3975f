/** The dashboard's pure presentation helpers: relative times, percentages, sparkline geometry. */
import { describe, expect, it } from 'vitest';
import { ago, percent, sparklinePoints, until, words } from '../../dashboard/src/format.js';

const NOW = Date.parse('2026-12-01T12:00:00.000Z');

describe('dashboard format', () => {
  it('says how long ago and how long until, from the clock it is given', () => {
    expect(ago('2026-12-01T11:59:56.000Z', NOW)).toBe('4 s ago');
    expect(ago('2026-12-01T11:57:00.000Z', NOW)).toBe('3 min ago');
    expect(ago('2026-12-01T10:00:00.000Z', NOW)).toBe('2 h ago');
    expect(ago('2026-11-20T10:00:00.000Z', NOW)).toBe('2026-11-20');
    // A server clock slightly ahead never shows "in the future".
    expect(ago('2026-12-01T12:00:02.000Z', NOW)).toBe('0 s ago');
    expect(ago(null, NOW)).toBe('—');
    expect(until('2026-12-01T12:00:12.000Z', NOW)).toBe('in 12 s');
    expect(until('2026-12-01T15:00:00.000Z', NOW)).toBe('in 3 h');
    expect(until('2026-12-01T11:00:00.000Z', NOW)).toBe('now');
  });

  it('writes percentages and enum words for people', () => {
    expect(percent(25)).toBe('25%');
    expect(percent(33.3333)).toBe('33.3%');
    expect(percent(null)).toBe('—');
    expect(words('FORCED_OPEN')).toBe('FORCED OPEN');
  });

  it('draws the sparkline right-aligned in its slots, 0% at the bottom and 100% at the top, nulls as 0', () => {
    // 3 slots over 100 px: x = 0, 50, 100; height 12 leaves 1 px either side.
    expect(sparklinePoints([0, 100, null], 100, 12, 3)).toBe('0.0,11.0 50.0,1.0 100.0,11.0');
    // Fewer values than slots: the newest stays at the right edge.
    expect(sparklinePoints([50], 100, 12, 3)).toBe('100.0,6.0');
    // Out-of-range values are clamped.
    expect(sparklinePoints([150, -5], 10, 12, 2)).toBe('0.0,1.0 10.0,11.0');
  });
});
