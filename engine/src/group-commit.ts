import { types } from 'node:util';

/**
 * Group commit: callers submit items one at a time; items that arrive while a flush is under way are
 * flushed together by the next one. Idle, an item is flushed at once (no added latency); busy, batches
 * grow with the load — what PostgreSQL does with its WAL, applied to our own transactions, so a burst
 * of requests costs a few commits instead of one each.
 */
export interface GroupCommitOptions {
  /** Most items per flush. */
  maxBatch: number;
  /** Flushes under way at once (each holds a pooled connection). */
  maxInFlight: number;
}

interface Waiter<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

export class GroupCommit<T, R> {
  private readonly waiting: Waiter<T, R>[] = [];
  private inFlight = 0;

  /**
   * `flush` gets the batch's items and returns one result per item, in order: an Error rejects that
   * item's caller alone; a thrown error rejects the whole batch.
   */
  constructor(
    private readonly flush: (items: T[]) => Promise<(R | Error)[]>,
    private readonly opts: GroupCommitOptions,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.waiting.length) {
      const batch = this.waiting.splice(0, this.opts.maxBatch);
      this.inFlight += 1;
      let flushing: Promise<(R | Error)[]>;
      try {
        // Started synchronously: a lone item is flushed without waiting a tick.
        flushing = this.flush(batch.map((w) => w.item));
      } catch (err) {
        flushing = Promise.reject(err);
      }
      flushing
        .then(
          (results) =>
            batch.forEach((w, i) => {
              const result = results[i];
              // isNativeError as well: an error made by Node itself (a refused socket) comes from
              // another realm than this module's Error under a VM context such as jest's.
              if (result instanceof Error || types.isNativeError(result)) w.reject(result);
              else w.resolve(result as R);
            }),
          (err: unknown) => batch.forEach((w) => w.reject(err)),
        )
        .finally(() => {
          this.inFlight -= 1;
          this.pump();
        });
    }
  }
}
