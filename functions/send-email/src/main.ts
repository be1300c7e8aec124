import { createPostgresPool, runFunctionMain } from '@baton/sdk';
import nodemailer from 'nodemailer';
import pg from 'pg';
import { createSendEmail, parseSendEmailConfig, SEND_EMAIL } from './index';

runFunctionMain(SEND_EMAIL, ({ logger }) => {
  const mail = parseSendEmailConfig();
  // Business data only (DATABASE_URL): workflow state is the coordinator's.
  const pool = createPostgresPool(pg.Pool, { applicationName: `fn.${SEND_EMAIL}`, max: 2 });
  const transport = nodemailer.createTransport({
    url: mail.smtpUrl,
    // Fail an unreachable server well within a step timeout; the step's retry policy takes over.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 60_000,
  });
  // Only the endpoint: the URL may carry the SMTP password.
  logger.info({ smtp: mail.smtpEndpoint, from: mail.from }, 'SMTP transport configured');
  return {
    definition: createSendEmail({ pool, transport, from: mail.from }),
    close: async () => {
      transport.close();
      await pool.end();
    },
  };
}).catch((err: unknown) => {
  process.stderr.write(`${SEND_EMAIL} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
