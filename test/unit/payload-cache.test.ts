import { PayloadCache } from '../../services/coordinator/src/payload-cache';

describe('payload cache', () => {
  it('keeps only payloads stored big enough, bounded by their JSON size, least recently used first out', () => {
    const cache = new PayloadCache(100, 10);
    const json = (n: number) => 'x'.repeat(n - 2); // a string of n bytes of JSON
    cache.keep('small', json(40), 9); // compressed below the threshold: not worth it
    cache.keep('unknown', json(40), null);
    expect(cache.held(['small', 'unknown'])).toEqual([]);
    cache.keep('a', json(40), 10);
    cache.keep('b', json(40), 10);
    expect(cache.get('a')).toBe(json(40)); // a is now the most recently used
    cache.keep('c', json(40), 10); // 120 bytes of JSON > 100: b goes
    expect(cache.held(['a', 'b', 'c'])).toEqual(['a', 'c']);
    expect(cache.size).toEqual({ entries: 2, bytes: 80 });
    // Stored small (it compresses) but 101 bytes of JSON: over the bound, never kept.
    cache.keep('huge', json(101), 10);
    expect(cache.held(['huge'])).toEqual([]);
  });
});
