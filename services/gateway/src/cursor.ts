import type { z } from 'zod';
import { ErrorCode, ValidationError } from '@baton/workflow';

/**
 * Opaque page cursors: base64url JSON. Opaque so clients do not build them and the keyset can
 * change; validated on the way back in, since they come from the client.
 */
export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

export function decodeCursor<S extends z.ZodType>(schema: S, cursor: string): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    raw = undefined;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new ValidationError(
      'cursor is not one this API returned',
      [{ path: 'cursor', message: 'invalid cursor' }],
      ErrorCode.INVALID_CURSOR,
    );
  }
  return parsed.data;
}
