import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * JSON logs on stdout. Secrets never reach a line: any field with one of these names is redacted
 * wherever it sits in the first levels of the logged object.
 */
const REDACTED_PATHS = [
  'password',
  'authorization',
  'smtpUrl',
  'apiKey',
  'apiKeys',
  '*.password',
  '*.authorization',
  '*.smtpUrl',
  '*.apiKey',
  '*.apiKeys',
  'headers.authorization',
  'req.headers.authorization',
];

export function createLogger(component: string, level = 'info', base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { component, ...base },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
