/** JSON logs with secret redaction: one logger for every process, defined in the SDK (sdk/src/logger.ts). */
export { createLogger, type Logger } from '@baton/sdk';
