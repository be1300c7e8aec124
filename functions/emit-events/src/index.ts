import { defineFunction, EVENT_NAME_PATTERN, type FunctionDefinition } from '@baton/sdk';
import { z } from 'zod';

/** An event name, as ctx.emit and `POST /v1/events/:name` accept it. */
const eventName = z
  .string()
  .regex(EVENT_NAME_PATTERN, 'use lowercase letters, digits, dots, dashes and underscores (max 128)');

export const EMIT_EVENTS = 'emit-events';

/** The most events one step may emit (the runtime's own bound on ctx.emit). */
export const MAX_EVENTS_PER_STEP = 100;

export const emitEventsInput = z.object({
  name: eventName,
  /** One event per item: a fan-out, e.g. one `invoice.requested` per customer of a feed. */
  payloads: z.array(z.unknown()).max(MAX_EVENTS_PER_STEP),
});
export type EmitEventsInput = z.infer<typeof emitEventsInput>;

/**
 * Publishes one event per payload, through ctx.emit: they are delivered once the step's success is
 * recorded, exactly once per step, and start every workflow subscribed to the name.
 */
export function createEmitEvents(): FunctionDefinition<EmitEventsInput, { emitted: number }> {
  return defineFunction({
    name: EMIT_EVENTS,
    description: 'Publishes one event per payload (fan-out to subscribed workflows)',
    input: emitEventsInput,
    handler: async ({ name, payloads }, ctx) => {
      for (const payload of payloads) ctx.emit(name, payload);
      ctx.log.info('events emitted', { name, count: payloads.length });
      return { emitted: payloads.length };
    },
  });
}
