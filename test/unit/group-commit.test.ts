import { GroupCommit } from '@baton/engine';

/**
 * GroupCommit with a controllable flush: every call records its batch and returns a promise the test
 * settles itself, so "in flight" is exact and no test waits on timers.
 */

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Call {
  items: string[];
  done: Deferred<(string | Error)[]>;
}

/** A flush whose calls the test answers one by one; tracks flushes running at once. */
function controlledFlush() {
  const calls: Call[] = [];
  const state = { running: 0, peak: 0 };
  const flush = async (items: string[]): Promise<(string | Error)[]> => {
    const call: Call = { items: [...items], done: deferred() };
    calls.push(call);
    state.running += 1;
    state.peak = Math.max(state.peak, state.running);
    try {
      return await call.done.promise;
    } finally {
      state.running -= 1;
    }
  };
  return { calls, state, flush, batches: () => calls.map((c) => c.items) };
}

/** Lets the promise callbacks (result delivery, the next pump) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
  await new Promise((resolve) => setImmediate(resolve));
}

/** Records how each submitted promise ended, without leaving rejections unhandled. */
function track<T>(promise: Promise<T>): { outcome?: { ok: true; value: T } | { ok: false; error: unknown } } {
  const tracked: { outcome?: { ok: true; value: T } | { ok: false; error: unknown } } = {};
  promise.then(
    (value) => (tracked.outcome = { ok: true, value }),
    (error: unknown) => (tracked.outcome = { ok: false, error }),
  );
  return tracked;
}

const upper = (items: string[]) => items.map((i) => i.toUpperCase());

describe('GroupCommit', () => {
  it('flushes a lone submit at once, with just that item', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 10, maxInFlight: 1 });
    const result = gc.submit('a');
    // No waiting for more items: the flush started synchronously.
    expect(f.batches()).toEqual([['a']]);
    f.calls[0].done.resolve(['A']);
    await expect(result).resolves.toBe('A');
    expect(f.batches()).toEqual([['a']]);
  });

  it('flushes the items submitted during a flush together in the next flush, each getting its own result', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 10, maxInFlight: 1 });
    const a = gc.submit('a');
    const b = gc.submit('b');
    const c = gc.submit('c');
    const d = gc.submit('d');
    await settle();
    expect(f.batches()).toEqual([['a']]);

    f.calls[0].done.resolve(['A']);
    await expect(a).resolves.toBe('A');
    await settle();
    expect(f.batches()).toEqual([['a'], ['b', 'c', 'd']]);

    f.calls[1].done.resolve(upper(f.calls[1].items));
    await expect(Promise.all([b, c, d])).resolves.toEqual(['B', 'C', 'D']);
    await settle();
    expect(f.calls).toHaveLength(2);
  });

  it('splits a backlog into batches of at most maxBatch, in submission order', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 2, maxInFlight: 1 });
    const items = ['a', 'b', 'c', 'd', 'e', 'f'];
    const results = items.map((i) => gc.submit(i));
    await settle();
    expect(f.batches()).toEqual([['a']]);
    for (let n = 0; n < 4; n += 1) {
      f.calls[n].done.resolve(upper(f.calls[n].items));
      await settle();
    }
    expect(f.batches()).toEqual([['a'], ['b', 'c'], ['d', 'e'], ['f']]);
    await expect(Promise.all(results)).resolves.toEqual(['A', 'B', 'C', 'D', 'E', 'F']);
  });

  it('runs at most maxInFlight flushes at once and starts the next as soon as one finishes', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 1, maxInFlight: 2 });
    const results = ['a', 'b', 'c', 'd', 'e'].map((i) => gc.submit(i));
    await settle();
    expect(f.batches()).toEqual([['a'], ['b']]);
    expect(f.state.running).toBe(2);

    f.calls[1].done.resolve(['B']);
    await settle();
    expect(f.batches()).toEqual([['a'], ['b'], ['c']]);
    expect(f.state.running).toBe(2);

    f.calls[0].done.resolve(['A']);
    f.calls[2].done.resolve(['C']);
    await settle();
    expect(f.batches()).toEqual([['a'], ['b'], ['c'], ['d'], ['e']]);
    f.calls[3].done.resolve(['D']);
    f.calls[4].done.resolve(['E']);
    await expect(Promise.all(results)).resolves.toEqual(['A', 'B', 'C', 'D', 'E']);
    expect(f.state.peak).toBe(2);
    expect(f.state.running).toBe(0);
  });

  it('with room for several flushes, each new submit starts its own flush', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 10, maxInFlight: 3 });
    const results = ['a', 'b', 'c', 'd', 'e'].map((i) => gc.submit(i));
    await settle();
    // Three flushes of one item each, then the last two wait together.
    expect(f.batches()).toEqual([['a'], ['b'], ['c']]);
    f.calls[0].done.resolve(['A']);
    await settle();
    expect(f.batches()).toEqual([['a'], ['b'], ['c'], ['d', 'e']]);
    f.calls[1].done.resolve(['B']);
    f.calls[2].done.resolve(['C']);
    f.calls[3].done.resolve(['D', 'E']);
    await expect(Promise.all(results)).resolves.toEqual(['A', 'B', 'C', 'D', 'E']);
    expect(f.state.peak).toBe(3);
  });

  it('an Error result rejects that item alone; the rest of its batch resolves', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 10, maxInFlight: 1 });
    const a = gc.submit('a');
    const b = track(gc.submit('b'));
    const c = track(gc.submit('c'));
    const d = track(gc.submit('d'));
    f.calls[0].done.resolve(['A']);
    await a;
    await settle();
    expect(f.batches()).toEqual([['a'], ['b', 'c', 'd']]);

    const bad = new Error('c is bad');
    f.calls[1].done.resolve(['B', bad, 'D']);
    await settle();
    expect(b.outcome).toEqual({ ok: true, value: 'B' });
    expect(c.outcome).toEqual({ ok: false, error: bad });
    expect(d.outcome).toEqual({ ok: true, value: 'D' });
  });

  it('a thrown flush rejects every item of its batch, and later batches still work', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 10, maxInFlight: 1 });
    const a = track(gc.submit('a'));
    const b = track(gc.submit('b'));
    const c = track(gc.submit('c'));
    await settle();
    expect(f.batches()).toEqual([['a']]);

    f.calls[0].done.resolve(['A']);
    await settle();
    expect(a.outcome).toEqual({ ok: true, value: 'A' });
    expect(f.batches()).toEqual([['a'], ['b', 'c']]);

    // While the failing flush runs, another item arrives: it belongs to the next batch.
    const d = track(gc.submit('d'));
    const boom = new Error('connection lost');
    f.calls[1].done.reject(boom);
    await settle();
    expect(b.outcome).toEqual({ ok: false, error: boom });
    expect(c.outcome).toEqual({ ok: false, error: boom });
    expect(d.outcome).toBeUndefined();
    expect(f.batches()).toEqual([['a'], ['b', 'c'], ['d']]);
    expect(f.state.running).toBe(1);

    f.calls[2].done.resolve(['D']);
    await settle();
    expect(d.outcome).toEqual({ ok: true, value: 'D' });

    // And the committer is idle again: a new lone item is flushed at once.
    const e = gc.submit('e');
    expect(f.batches()).toEqual([['a'], ['b', 'c'], ['d'], ['e']]);
    f.calls[3].done.resolve(['E']);
    await expect(e).resolves.toBe('E');
  });

  it('a rejected flush does not use up an in-flight slot', async () => {
    const f = controlledFlush();
    const gc = new GroupCommit<string, string>(f.flush, { maxBatch: 10, maxInFlight: 1 });
    for (let n = 0; n < 3; n += 1) {
      const p = track(gc.submit(`x${n}`));
      expect(f.calls).toHaveLength(n + 1);
      f.calls[n].done.reject(new Error(`fail ${n}`));
      await settle();
      expect(p.outcome).toEqual({ ok: false, error: new Error(`fail ${n}`) });
    }
    const ok = gc.submit('y');
    expect(f.batches()).toEqual([['x0'], ['x1'], ['x2'], ['y']]);
    f.calls[3].done.resolve(['Y']);
    await expect(ok).resolves.toBe('Y');
  });
});
