import { BatonError, ConfigError, NonRetryableError } from '@baton/workflow';
import { PDFParse } from 'pdf-parse';
import {
  computeInvoice,
  createInvoiceInput,
  formatInvoiceNumber,
  TAX_RATE,
  taxFor,
} from '../../functions/create-invoice/src/index';
import {
  formatAmount,
  formatMoney,
  invoiceFilename,
  renderInvoicePdf,
  type InvoiceDocument,
} from '../../functions/generate-pdf/src/index';
import {
  classifySendError,
  composeInvoiceEmail,
  DEFAULT_MAIL_FROM,
  messageIdFor,
  parseSendEmailConfig,
} from '../../functions/send-email/src/index';

async function pdfText(pdf: Buffer): Promise<{ text: string; pages: number }> {
  // pdf.js may transfer the bytes it is given; hand it a copy.
  const parser = new PDFParse({ data: new Uint8Array(pdf) });
  try {
    const result = await parser.getText();
    return { text: result.text, pages: result.total };
  } finally {
    await parser.destroy();
  }
}

// cust-01's orders in seeds/demo.sql.
const ADA_ORDERS = [
  { id: 'ord-0101', description: 'Difference engine gears', quantity: 4, unitPriceCents: 12500, amountCents: 50000 },
  { id: 'ord-0102', description: 'Punch cards (box of 500)', quantity: 2, unitPriceCents: 3999, amountCents: 7998 },
  { id: 'ord-0103', description: 'Consulting: note G review', quantity: 1, unitPriceCents: 45000, amountCents: 45000 },
].map((o) => ({ ...o, currency: 'EUR' }));

describe('invoice totals', () => {
  it('charges 20 % VAT on the subtotal, in whole cents rounded half up', () => {
    expect(TAX_RATE).toBe(0.2);
    expect(taxFor(0)).toBe(0);
    expect(taxFor(10_000)).toBe(2_000);
    expect(taxFor(12)).toBe(2); // 2.4
    expect(taxFor(13)).toBe(3); // 2.6
    expect(taxFor(102_998)).toBe(20_600); // 20599.6
    expect(taxFor(2_147_483_640)).toBe(429_496_728); // no float drift on large amounts
  });

  it('computes lines, subtotal, VAT and total of the demo customer cust-01', () => {
    const totals = computeInvoice(ADA_ORDERS);
    expect(totals.lines).toEqual([
      {
        orderId: 'ord-0101',
        description: 'Difference engine gears',
        quantity: 4,
        unitPriceCents: 12500,
        amountCents: 50000,
      },
      {
        orderId: 'ord-0102',
        description: 'Punch cards (box of 500)',
        quantity: 2,
        unitPriceCents: 3999,
        amountCents: 7998,
      },
      {
        orderId: 'ord-0103',
        description: 'Consulting: note G review',
        quantity: 1,
        unitPriceCents: 45000,
        amountCents: 45000,
      },
    ]);
    expect(totals).toMatchObject({ subtotalCents: 102_998, taxCents: 20_600, totalCents: 123_598, currency: 'EUR' });
    expect(totals.subtotalCents + totals.taxCents).toBe(totals.totalCents);
  });

  it('taxes the sum, not each line, so line roundings do not add up', () => {
    const cent = { description: 'Washer', quantity: 1, unitPriceCents: 1, amountCents: 1, currency: 'EUR' };
    const totals = computeInvoice([1, 2, 3].map((i) => ({ ...cent, id: `o${i}` })));
    // Per line 0.2 cents would round to 0 three times; on the 3-cent subtotal it is 0.6 → 1.
    expect(totals).toMatchObject({ subtotalCents: 3, taxCents: 1, totalCents: 4 });
  });

  it('refuses orders in several currencies and totals beyond the invoices column', () => {
    const mixed = [ADA_ORDERS[0], { ...ADA_ORDERS[1], currency: 'USD' }];
    expect(() => computeInvoice(mixed)).toThrow(NonRetryableError);
    expect(() => computeInvoice(mixed)).toThrow(expect.objectContaining({ code: 'MIXED_CURRENCIES' }));
    const huge = { ...ADA_ORDERS[0], quantity: 2, unitPriceCents: 1_000_000_000, amountCents: 2_000_000_000 };
    expect(() => computeInvoice([huge])).toThrow(expect.objectContaining({ code: 'INVOICE_TOO_LARGE' }));
  });

  it('validates the input fetch-orders produces', () => {
    const customer = { id: 'cust-01', name: 'Ada Lovelace Ltd', email: 'ada@example.com', address: null };
    expect(createInvoiceInput.safeParse({ customer, orders: ADA_ORDERS }).success).toBe(true);
    expect(createInvoiceInput.safeParse({ customer, orders: [] }).success).toBe(false);
    const wrongAmount = { ...ADA_ORDERS[0], amountCents: 1 };
    expect(createInvoiceInput.safeParse({ customer, orders: [wrongAmount] }).success).toBe(false);
    const fractional = { ...ADA_ORDERS[0], unitPriceCents: 12.5, amountCents: 50 };
    expect(createInvoiceInput.safeParse({ customer, orders: [fractional] }).success).toBe(false);
  });

  it('numbers invoices INV-<year>-<six-digit sequence>', () => {
    expect(formatInvoiceNumber(2025, 42)).toBe('INV-2025-000042');
    expect(formatInvoiceNumber(2026, 1_234_567)).toBe('INV-2026-1234567');
  });
});

describe('money formatting', () => {
  it('formats integer cents with grouping and two decimals', () => {
    expect(formatAmount(123_598)).toBe('1,235.98');
    expect(formatAmount(5)).toBe('0.05');
    expect(formatAmount(100_000_000)).toBe('1,000,000.00');
    expect(formatAmount(-250)).toBe('-2.50');
    expect(formatMoney(123_598, 'EUR')).toBe('EUR 1,235.98');
  });
});

describe('invoice PDF', () => {
  const invoice: InvoiceDocument = {
    number: 'INV-2025-000007',
    issuedAt: new Date('2025-03-04T10:00:00Z'),
    customer: {
      id: 'cust-01',
      name: 'Ada Lovelace Ltd',
      email: 'ada@example.com',
      address: '12 Analytical Row, London',
    },
    lines: computeInvoice(ADA_ORDERS).lines,
    subtotalCents: 102_998,
    taxCents: 20_600,
    totalCents: 123_598,
    currency: 'EUR',
  };

  it('renders a PDF naming seller, customer, invoice, lines and totals', async () => {
    const pdf = await renderInvoicePdf(invoice);
    expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    const { text, pages } = await pdfText(pdf);
    expect(pages).toBe(1);
    for (const expected of [
      'Baton Demo Shop',
      'Ada Lovelace Ltd',
      'cust-01',
      '12 Analytical Row, London',
      'INV-2025-000007',
      '2025-03-04',
      'Difference engine gears',
      'Punch cards (box of 500)',
      'Consulting: note G review',
      'Subtotal EUR 1,029.98',
      'VAT EUR 206.00',
      'Total EUR 1,235.98',
    ]) {
      expect(text).toContain(expected);
    }
  });

  it('continues the table on further pages and numbers them', async () => {
    const lines = Array.from({ length: 60 }, (_, i) => ({
      orderId: `o${i}`,
      description: `Item number ${i}`,
      quantity: 1,
      unitPriceCents: 100,
      amountCents: 100,
    }));
    const pdf = await renderInvoicePdf({ ...invoice, lines, subtotalCents: 6000, taxCents: 1200, totalCents: 7200 });
    const { text, pages } = await pdfText(pdf);
    expect(pages).toBeGreaterThan(1);
    expect(text).toContain(`page ${pages} of ${pages}`);
    for (let i = 0; i < 60; i++) expect(text).toContain(`Item number ${i} `);
    expect(text).toContain('Total EUR 72.00');
  });

  it('names the file after the invoice number', () => {
    expect(invoiceFilename('INV-2025-000007')).toBe('INV-2025-000007.pdf');
    expect(invoiceFilename('INV/../x')).toBe('INV_.._x.pdf');
  });
});

describe('invoice e-mail', () => {
  it('puts the invoice number in the subject and the total in both bodies, escaping HTML', () => {
    const email = composeInvoiceEmail({
      number: 'INV-2025-000007',
      issuedAt: new Date('2025-03-04T10:00:00Z'),
      customerName: 'Ada <Lovelace> & Co',
      totalCents: 123_598,
      taxCents: 20_600,
      currency: 'EUR',
    });
    expect(email.subject).toContain('INV-2025-000007');
    expect(email.text).toContain('Dear Ada <Lovelace> & Co,');
    expect(email.text).toContain('EUR 1,235.98');
    expect(email.html).toContain('EUR 1,235.98');
    expect(email.html).toContain('Ada &lt;Lovelace&gt; &amp; Co');
    expect(email.html).not.toContain('<Lovelace>');
  });

  it('derives a stable, valid Message-ID from the idempotency key', () => {
    const runId = '6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
    expect(messageIdFor(`${runId}:send-email`)).toBe(`<${runId}.send-email@baton>`);
    expect(messageIdFor(`${runId}:email:compensate`)).toBe(`<${runId}.email.compensate@baton>`);
    expect(messageIdFor('a b<>@c')).toBe('<a.b.c@baton>');
    expect(messageIdFor(':::')).toBe('<message@baton>');
  });

  it('fails the step for good on a permanent SMTP rejection and retries the rest', () => {
    const rejected = Object.assign(new Error("Can't send mail"), { code: 'EENVELOPE', responseCode: 550 });
    expect(classifySendError(rejected)).toBeInstanceOf(NonRetryableError);
    expect(classifySendError(rejected).code).toBe('EMAIL_REJECTED');

    const deferred = Object.assign(new Error('try later'), { code: 'EENVELOPE', responseCode: 451, permanent: false });
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ESOCKET' });
    for (const err of [deferred, refused]) {
      const mapped = classifySendError(err);
      expect(mapped).toBeInstanceOf(BatonError);
      expect(mapped.retryable).toBe(true);
      expect(mapped.code).toBe('EMAIL_SEND_FAILED');
    }
  });

  it('reads SMTP_URL and MAIL_FROM, never echoing the SMTP password', () => {
    const ok = parseSendEmailConfig({ SMTP_URL: 'smtp://user:s3cret@mail.example.com:587' });
    expect(ok).toEqual({
      smtpUrl: 'smtp://user:s3cret@mail.example.com:587',
      smtpEndpoint: 'smtp://mail.example.com:587',
      from: DEFAULT_MAIL_FROM,
    });
    expect(parseSendEmailConfig({ SMTP_URL: 'smtp://127.0.0.1:1025', MAIL_FROM: 'a@b.c' }).from).toBe('a@b.c');

    expect(() => parseSendEmailConfig({})).toThrow(/SMTP_URL is missing/);
    for (const bad of ['http://user:s3cret@mail.example.com', 'user:s3cret not a url']) {
      let error: unknown;
      try {
        parseSendEmailConfig({ SMTP_URL: bad });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/SMTP_URL/);
      expect((error as Error).message).not.toContain('s3cret');
    }
    expect(() => parseSendEmailConfig({ SMTP_URL: 'smtp://h:25', MAIL_FROM: 'nobody' })).toThrow(ConfigError);
  });
});
