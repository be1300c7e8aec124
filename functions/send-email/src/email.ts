import { BatonError, ConfigError, NonRetryableError, parseEnv } from '@baton/sdk';
import addressparser from 'nodemailer/lib/addressparser';
import { z } from 'zod';
import { ErrorCode } from './error-codes';

/** Pure parts of send-email: configuration, message composition, SMTP error classification. */

export const DEFAULT_MAIL_FROM = 'Baton Invoices <invoices@baton.local>';
export const SHOP_NAME = 'Baton Demo Shop';

export interface SendEmailConfig {
  smtpUrl: string;
  /** `smtp://host:port`: the URL without credentials, the only form that may be logged. */
  smtpEndpoint: string;
  from: string;
}

const sendEmailEnv = z.object({
  SMTP_URL: z.string().min(1, 'required, e.g. smtp://127.0.0.1:1025'),
  MAIL_FROM: z.string().trim().min(1).default(DEFAULT_MAIL_FROM),
});

/**
 * Reads SMTP_URL and MAIL_FROM; a bad value throws ConfigError. The SMTP URL's problems are
 * described without echoing it, as it may carry a password.
 */
export function parseSendEmailConfig(env: NodeJS.ProcessEnv = process.env): SendEmailConfig {
  const { SMTP_URL, MAIL_FROM } = parseEnv(sendEmailEnv, env);
  let url: URL;
  try {
    url = new URL(SMTP_URL);
  } catch {
    throw new ConfigError('Invalid configuration: SMTP_URL is not a URL (expected smtp://[user:pass@]host:port)');
  }
  if ((url.protocol !== 'smtp:' && url.protocol !== 'smtps:') || !url.hostname) {
    throw new ConfigError(
      `Invalid configuration: SMTP_URL must be smtp://[user:pass@]host:port or smtps://..., got a '${url.protocol}' URL`,
    );
  }
  const addresses = addressparser(MAIL_FROM, { flatten: true });
  if (addresses.length !== 1 || !/^[^@\s]+@[^@\s]+$/.test(addresses[0].address)) {
    throw new ConfigError(
      `Invalid configuration: MAIL_FROM=${JSON.stringify(MAIL_FROM)} is invalid: expected one address such as '${DEFAULT_MAIL_FROM}'`,
    );
  }
  return { smtpUrl: SMTP_URL, smtpEndpoint: `${url.protocol}//${url.host}`, from: MAIL_FROM };
}

export interface InvoiceEmailData {
  number: string;
  issuedAt: Date;
  customerName: string;
  totalCents: number;
  taxCents: number;
  currency: string;
}

export interface ComposedEmail {
  subject: string;
  text: string;
  html: string;
}

const grouping = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** `EUR 1,235.98`, as printed on the PDF (integer cents of a 2-decimal currency). */
export function formatMoney(cents: number, currency: string): string {
  const abs = Math.abs(cents);
  return `${currency} ${cents < 0 ? '-' : ''}${grouping.format(Math.floor(abs / 100))}.${String(abs % 100).padStart(2, '0')}`;
}

export function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

export function composeInvoiceEmail(invoice: InvoiceEmailData): ComposedEmail {
  const total = formatMoney(invoice.totalCents, invoice.currency);
  const vat = formatMoney(invoice.taxCents, invoice.currency);
  const date = invoice.issuedAt.toISOString().slice(0, 10);
  const subject = `Invoice ${invoice.number} from ${SHOP_NAME}`;
  const text = [
    `Dear ${invoice.customerName},`,
    '',
    `please find attached invoice ${invoice.number} of ${date}.`,
    '',
    `Total due: ${total} (including VAT of ${vat}).`,
    `Please pay within 30 days, quoting ${invoice.number}.`,
    '',
    'Kind regards,',
    SHOP_NAME,
  ].join('\n');
  const h = escapeHtml;
  const html = `<!doctype html>
<html>
  <body style="font-family: Helvetica, Arial, sans-serif; color: #222">
    <p>Dear ${h(invoice.customerName)},</p>
    <p>please find attached invoice <strong>${h(invoice.number)}</strong> of ${h(date)}.</p>
    <p>Total due: <strong>${h(total)}</strong> (including VAT of ${h(vat)}).<br>
       Please pay within 30 days, quoting ${h(invoice.number)}.</p>
    <p>Kind regards,<br>${h(SHOP_NAME)}</p>
  </body>
</html>
`;
  return { subject, text, html };
}

/**
 * The Message-ID of a step's e-mail, derived from its idempotency key (`<runId>:<stepId>`): a
 * message re-sent by a retry carries the same id, so mail clients and the catcher see one message.
 */
export function messageIdFor(idempotencyKey: string, domain = 'baton'): string {
  const local = idempotencyKey
    .replace(/[^A-Za-z0-9_-]+/g, '.')
    .replace(/^\.+|\.+$/g, '')
    .slice(0, 200);
  return `<${local || 'message'}@${domain}>`;
}

interface SmtpError {
  code?: string;
  response?: string;
  responseCode?: number;
  permanent?: boolean;
}

/**
 * Maps a nodemailer failure to Baton's: a permanent SMTP rejection (5xx; nodemailer's `permanent`
 * also treats 503 as temporary) or an envelope that cannot be sent fails the step for good;
 * connection problems, timeouts and 4xx replies stay retryable.
 */
export function classifySendError(err: unknown): BatonError {
  const e = (err ?? {}) as SmtpError;
  const message = err instanceof Error ? err.message : String(err);
  const permanent = e.permanent ?? (e.responseCode !== undefined && e.responseCode >= 500);
  if (permanent || (e.responseCode === undefined && (e.code === 'EENVELOPE' || e.code === 'ECONFIG'))) {
    return new NonRetryableError(ErrorCode.EMAIL_REJECTED, `SMTP server rejected the invoice e-mail: ${message}`, {
      details: { smtpCode: e.code, responseCode: e.responseCode, response: e.response },
      cause: err,
    });
  }
  return new BatonError(ErrorCode.EMAIL_SEND_FAILED, `could not send the invoice e-mail: ${message}`, {
    details: { smtpCode: e.code, responseCode: e.responseCode },
    cause: err,
  });
}
