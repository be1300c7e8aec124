import { defineFunction, NonRetryableError } from '@baton/sdk';
import { z } from 'zod';

/** The function's name: its queue is `{fn.acme-shout}`, workflows call it as `function: acme-shout`. */
export const NAME = 'acme-shout';

/** What a step gives it (`input:` in the workflow, after templates are resolved). Checked before the handler runs. */
export const shoutInput = z.object({
  text: z.string().max(10_000),
  /** How many exclamation marks. */
  excitement: z.number().int().min(0).max(10).default(1),
});
export type ShoutInput = z.infer<typeof shoutInput>;

/** Pure logic, tested without Redis. */
export function shoutText({ text, excitement }: ShoutInput): string {
  return `${text.toUpperCase()}${'!'.repeat(excitement)}`;
}

export const shout = defineFunction({
  name: NAME,
  description: 'Upper-cases a text and adds exclamation marks',
  input: shoutInput,
  handler: async (input, ctx) => {
    // A failure no retry can fix: the step fails at once with this code (the run's error.code).
    if (!input.text.trim()) throw new NonRetryableError('EMPTY_TEXT', 'there is nothing to shout');
    // Stored with the run (GET /v1/runs/:id/logs) and printed as JSON on stdout.
    ctx.log.info('shouting', { length: input.text.length, attempt: ctx.attempt });
    // Anything else thrown is retried per the step's retry policy; key side effects on
    // ctx.idempotencyKey (a handler runs at least once) and pass ctx.signal to what you call.
    return { shouted: shoutText(input) };
  },
});
