/**
 * The PostgreSQL error codes Baton reacts to, by name (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 * Code elsewhere asks these helpers instead of comparing quoted codes.
 */
export const SQLSTATE = {
  uniqueViolation: '23505',
  /** A referenced row does not exist (e.g. an invoice for an unknown customer). */
  foreignKeyViolation: '23503',
  /** jsonb/text refused a value: NUL (`\u0000`), an invalid escape. */
  untranslatableCharacter: '22P05',
  characterNotInRepertoire: '22021',
  invalidEscapeSequence: '22025',
  /** A value past a hard limit (a jsonb over 255 MB, a string over 1 GB). */
  programLimitExceeded: '54000',
  lockNotAvailable: '55P03',
  queryCanceled: '57014',
  /** CREATE DATABASE of a database that exists (another process created it first). */
  duplicateDatabase: '42P04',
} as const;

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A value in the statement could not be stored as given (its text), whatever the connection does. */
export function isUnstorableText(err: unknown): boolean {
  const code = codeOf(err);
  return (
    code === SQLSTATE.untranslatableCharacter ||
    code === SQLSTATE.characterNotInRepertoire ||
    code === SQLSTATE.invalidEscapeSequence
  );
}

/**
 * The data itself is at fault (class 22, data exception, or 54, program limit exceeded): sending the
 * same values again fails again, so retrying is pointless, unlike a lost connection or a lock timeout.
 */
export function isDataError(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && (code.startsWith('22') || code.startsWith('54'));
}
