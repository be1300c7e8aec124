/**
 * Large payloads the coordinator reads again and again but which never change once written: a run's
 * input, and the output of a step execution that has ended (a finished execution never changes
 * again; see run-store.ts). Every batch planning a run loads both — a forEach over a 3 MB list
 * would otherwise move and parse those 3 MB for each of its ~100 batches (measured: 116 ms a batch,
 * under the run's lock). The statements that load them leave out the ones held here, and the caller
 * fills them in.
 *
 * Only payloads of at least `minBytes` (as PostgreSQL stores them, `pg_column_size`) are kept, the
 * least recently used dropped past `maxBytes`: small ones cost less to load than to track. Safe
 * with any number of coordinators: what is held never changes in the database.
 */
export class PayloadCache {
  private readonly entries = new Map<string, { value: unknown; bytes: number }>();
  private bytes = 0;

  constructor(
    private readonly maxBytes = 64 * 1024 * 1024,
    readonly minBytes = 16 * 1024,
  ) {}

  /** The keys of `keys` held now: the statements leave those payloads out. */
  held(keys: string[]): string[] {
    return keys.filter((key) => this.entries.has(key));
  }

  /** A held payload (marked recently used). */
  get(key: string): unknown {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Keeps a payload read from the database, when it is big enough to be worth it. */
  keep(key: string, value: unknown, bytes: number | null): void {
    if (bytes === null || bytes < this.minBytes || bytes > this.maxBytes || this.entries.has(key)) return;
    this.entries.set(key, { value, bytes });
    this.bytes += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.bytes;
    }
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }
}

/** The coordinator process's cache (run-store.ts uses it for every load). */
export const payloads = new PayloadCache();
