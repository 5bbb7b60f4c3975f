/**
 * StreamRegistry (src/transport/sse.ts): ending a stream settles a reader that is waiting for
 * the next event, releases the source, and is selective by token; after endAll, new streams end
 * at once. The e2e side (real SSE, Yoga's `event: complete`) is in test/e2e/transports.test.ts.
 */
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { StreamRegistry } from '../../src/transport/sse.js';

function fakeResponse(): ServerResponse & EventEmitter {
  return Object.assign(new EventEmitter(), { writableFinished: false, destroyed: false }) as unknown as ServerResponse & EventEmitter;
}

/** A source that never yields on its own and records whether it was returned. */
function idleSource() {
  const state = { returned: false };
  const source: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: () => new Promise<IteratorResult<number>>(() => {}),
      return: () => {
        state.returned = true;
        return Promise.resolve({ value: undefined, done: true });
      },
    }),
  };
  return { source, state };
}

describe('StreamRegistry', () => {
  it('ends only the revoked token\'s streams, settling their pending reads and returning their sources', async () => {
    const registry = new StreamRegistry();
    const a = idleSource();
    const b = idleSource();
    const anonymous = idleSource();
    const sa = registry.track(a.source, { name: 'a', anonymous: false }, fakeResponse());
    const sb = registry.track(b.source, { name: 'b', anonymous: false }, fakeResponse());
    registry.track(anonymous.source, { name: 'anonymous', anonymous: true }, fakeResponse());
    expect(registry.size).toBe(3);
    const pendingA = sa.next();
    registry.endToken('a');
    await expect(pendingA).resolves.toEqual({ value: undefined, done: true });
    expect(a.state.returned).toBe(true);
    expect(b.state.returned).toBe(false);
    expect(registry.size).toBe(2);
    registry.endToken('anonymous');
    expect(registry.size).toBe(2);
    void sb.return?.();
    expect(b.state.returned).toBe(true);
  });

  it('passes events through, forgets a stream whose response closed, and after endAll ends new streams at once', async () => {
    const registry = new StreamRegistry();
    async function* two() {
      yield 1;
      yield 2;
    }
    const res = fakeResponse();
    const stream = registry.track(two(), undefined, res);
    expect(await stream.next()).toEqual({ value: 1, done: false });
    res.emit('close');
    expect(registry.size).toBe(0);
    expect(await stream.next()).toEqual({ value: undefined, done: true });

    const open = idleSource();
    const held = fakeResponse();
    registry.track(open.source, undefined, held);
    const ending = registry.endAll(10_000);
    held.emit('finish');
    await ending;
    expect(open.state.returned).toBe(true);
    const late = idleSource();
    const lateStream = registry.track(late.source, undefined, fakeResponse());
    expect(await lateStream.next()).toEqual({ value: undefined, done: true });
    expect(late.state.returned).toBe(true);
    expect(registry.isStream(held)).toBe(true);
    expect(registry.isStream(fakeResponse())).toBe(false);
  });
});
