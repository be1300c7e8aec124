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
  /** The server has no connection slot left (max_connections). */
  tooManyConnections: '53300',
  /** The server is shutting down, crashed, or starting (its backends are being terminated). */
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
} as const;

/** Node's socket errors of a connection that could not be made or was cut. */
const SOCKET_FAILURES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/** pg and pg-pool's own messages for a connection that could not be made, was cut, or was not given. */
const CLIENT_FAILURES = [
  'timeout exceeded when trying to connect',
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
];

/**
 * PostgreSQL cannot be reached or cannot take the statement now (down, restarting, out of
 * connections, a lock or statement timeout): the request may succeed later, unlike a bad statement.
 * A caller answering someone says 503 (retry), not 500 (bug).
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const code = codeOf(err);
  if (code !== undefined) {
    if (code.startsWith('08') || SOCKET_FAILURES.has(code)) return true;
    if (
      code === SQLSTATE.tooManyConnections ||
      code === SQLSTATE.adminShutdown ||
      code === SQLSTATE.crashShutdown ||
      code === SQLSTATE.cannotConnectNow ||
      code === SQLSTATE.lockNotAvailable ||
      code === SQLSTATE.queryCanceled
    )
      return true;
  }
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' && CLIENT_FAILURES.some((m) => message.startsWith(m));
}

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
