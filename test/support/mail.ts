import type net from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { PDFParse } from 'pdf-parse';
import { SMTPServer } from 'smtp-server';

/** The text of a PDF, extracted with pdf.js (through pdf-parse). */
export async function pdfText(pdf: Buffer): Promise<string> {
  // pdf.js may transfer the bytes it is given; hand it a copy.
  const parser = new PDFParse({ data: new Uint8Array(pdf) });
  try {
    return (await parser.getText()).text;
  } finally {
    await parser.destroy();
  }
}

export interface ReceivedMail {
  envelope: { from: string; to: string[] };
  mail: ParsedMail;
}

export interface TestSmtp {
  port: number;
  received: ReceivedMail[];
  close(): Promise<void>;
}

/**
 * A real SMTP server on a free port. `rejectRecipientsWith` answers RCPT TO with that code — for every
 * recipient, or only for those in `rejectOnly`.
 */
export async function startSmtp(
  opts: { rejectRecipientsWith?: number; rejectOnly?: string[] } = {},
): Promise<TestSmtp> {
  const received: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (!opts.rejectRecipientsWith || (opts.rejectOnly && !opts.rejectOnly.includes(address.address)))
        return callback();
      const err = Object.assign(new Error(`mailbox ${address.address} unavailable`), {
        responseCode: opts.rejectRecipientsWith,
      });
      callback(err);
    },
    onData(stream, session, callback) {
      simpleParser(stream).then(
        (mail) => {
          received.push({
            envelope: {
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((r) => r.address),
            },
            mail,
          });
          callback();
        },
        (err: Error) => callback(err),
      );
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as net.AddressInfo).port;
  return { port, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
