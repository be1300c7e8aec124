import { PayloadCache } from '../../services/coordinator/src/payload-cache';

describe('payload cache', () => {
  it('keeps only payloads big enough, and drops the least recently used past its bound', () => {
    const cache = new PayloadCache(100, 10);
    cache.keep('small', 'x', 9);
    cache.keep('unknown', 'x', null);
    expect(cache.held(['small', 'unknown'])).toEqual([]);
    cache.keep('a', { a: 1 }, 40);
    cache.keep('b', { b: 1 }, 40);
    expect(cache.get('a')).toEqual({ a: 1 }); // a is now the most recently used
    cache.keep('c', { c: 1 }, 40); // 120 > 100: b goes
    expect(cache.held(['a', 'b', 'c'])).toEqual(['a', 'c']);
    expect(cache.size).toEqual({ entries: 2, bytes: 80 });
    cache.keep('huge', 'x', 101);
    expect(cache.held(['huge'])).toEqual([]);
  });
});
