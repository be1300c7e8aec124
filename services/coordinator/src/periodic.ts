import type { Logger } from '@baton/engine';

/**
 * A pass run every `intervalMs`, one at a time (the next is scheduled when the last has ended, so a
 * slow pass is never overlapped), for the coordinator's background work: the reconciler and the
 * retention sweep. A pass that throws is logged and the next one comes all the same.
 */
export class Periodic {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;

  constructor(
    private readonly pass: () => Promise<unknown>,
    private readonly opts: { intervalMs: number; logger: Logger; what: string },
  ) {}

  start(): void {
    const tick = (): void => {
      this.running = this.pass()
        .catch((err: unknown) => this.opts.logger.warn({ err }, `${this.opts.what} failed`))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, this.opts.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.opts.intervalMs);
  }

  /** Stops scheduling passes and waits for the one under way. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
