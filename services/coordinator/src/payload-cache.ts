/**
 * Large payloads the coordinator reads again and again but which never change once written: a run's
 * input, and the output of a step execution that has ended (a finished execution never changes
 * again; see run-store.ts). Every batch planning a run loads both — a forEach over a 3 MB list
 * would otherwise move and parse those 3 MB for each of its ~100 batches (measured: 116 ms a batch,
 * under the run's lock). The statements that load them leave out the ones held here, and the caller
 * fills them in.
 *
 * Only payloads of at least `minStoredBytes` as PostgreSQL stores them (`pg_column_size`, after
 * compression) are considered: smaller ones cost less to load than to track. The bound is on their
 * JSON text (measured once, when kept), since a list that compresses to 7 KB may be 300 KB of JSON
 * to parse and to hold: the least recently used go past `maxBytes`. Safe with any number of
 * coordinators: what is held never changes in the database.
 */
export class PayloadCache {
  private readonly entries = new Map<string, { value: unknown; bytes: number }>();
  private bytes = 0;

  constructor(
    private readonly maxBytes = 32 * 1024 * 1024,
    readonly minStoredBytes = 1024,
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

  /** Keeps a payload read from the database (`storedBytes`: its size there), when it is worth it. */
  keep(key: string, value: unknown, storedBytes: number | null): void {
    if (storedBytes === null || storedBytes < this.minStoredBytes || this.entries.has(key)) return;
    const bytes = JSON.stringify(value)?.length ?? 0;
    if (bytes > this.maxBytes) return;
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
