import PDFDocument from 'pdfkit';

/** Pure rendering of an invoice to PDF bytes: no I/O, so it is unit tested on its own. */

export interface Seller {
  name: string;
  addressLines: string[];
  email: string;
}

export const SELLER: Seller = {
  name: 'Baton Demo Shop',
  addressLines: ['1 Queue Street', '10115 Workflow City'],
  email: 'invoices@baton.local',
};

export interface InvoiceDocumentLine {
  orderId: string;
  description: string;
  quantity: number;
  unitPriceCents: number;
  amountCents: number;
}

export interface InvoiceDocument {
  number: string;
  issuedAt: Date;
  customer: { id: string; name: string; email: string; address: string | null };
  lines: InvoiceDocumentLine[];
  subtotalCents: number;
  taxCents: number;
  totalCents: number;
  currency: string;
}

const grouping = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** `123598` → `1,235.98`, in integer arithmetic (amounts are cents of a 2-decimal currency). */
export function formatAmount(cents: number): string {
  const abs = Math.abs(cents);
  const whole = grouping.format(Math.floor(abs / 100));
  return `${cents < 0 ? '-' : ''}${whole}.${String(abs % 100).padStart(2, '0')}`;
}

/**
 * `EUR 1,235.98`. The ISO code rather than a symbol: PDF standard fonts cannot draw every currency
 * sign, and the code is unambiguous.
 */
export function formatMoney(cents: number, currency: string): string {
  return `${currency} ${formatAmount(cents)}`;
}

/** Issue dates are printed as the UTC calendar date, like the year in the invoice number. */
export function formatDate(date: Date): string {
  return date.toISOString().slice(0, 10);
}

export function invoiceFilename(number: string): string {
  return `${number.replace(/[^A-Za-z0-9._-]/g, '_')}.pdf`;
}

const PAGE_MARGIN = 50;
const FOOTER_SPACE = 40;
const GREY = '#555555';
const RULE = '#999999';

// Table columns on A4 (595 pt wide, 495 pt between the margins).
const COLUMNS = {
  description: { x: 50, width: 245 },
  quantity: { x: 300, width: 45 },
  unitPrice: { x: 350, width: 95 },
  amount: { x: 450, width: 95 },
};

/** Renders the invoice into an in-memory buffer (no temporary files). */
export function renderInvoicePdf(invoice: InvoiceDocument, seller: Seller = SELLER): Promise<Buffer> {
  const doc = new PDFDocument({
    size: 'A4',
    margin: PAGE_MARGIN,
    bufferPages: true, // footers with "page x of n" are written once the page count is known
    info: {
      Title: `Invoice ${invoice.number}`,
      Author: seller.name,
      Subject: `Invoice ${invoice.number} for ${invoice.customer.name}`,
      CreationDate: invoice.issuedAt,
    },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (chunk: Buffer) => chunks.push(chunk));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });

  try {
    drawInvoice(doc, invoice, seller);
    drawFooters(doc, invoice, seller);
  } catch (err) {
    doc.end();
    return Promise.reject(err);
  }
  doc.end();
  return done;
}

function drawInvoice(doc: PDFKit.PDFDocument, invoice: InvoiceDocument, seller: Seller): void {
  const right = doc.page.width - PAGE_MARGIN;
  const contentWidth = right - PAGE_MARGIN;

  // Seller header, title on the right.
  doc.font('Helvetica-Bold').fontSize(20).fillColor('black').text(seller.name, PAGE_MARGIN, PAGE_MARGIN);
  doc.font('Helvetica').fontSize(9).fillColor(GREY);
  for (const line of [...seller.addressLines, seller.email]) doc.text(line);
  doc
    .font('Helvetica-Bold')
    .fontSize(24)
    .fillColor('black')
    .text('INVOICE', PAGE_MARGIN, PAGE_MARGIN, { width: contentWidth, align: 'right' });

  // Bill-to on the left, invoice facts on the right.
  const blockTop = 140;
  doc.font('Helvetica-Bold').fontSize(10).text('Bill to', PAGE_MARGIN, blockTop);
  doc.font('Helvetica').fontSize(10).text(invoice.customer.name, { width: 260 });
  doc.fillColor(GREY).text(`Customer ID: ${invoice.customer.id}`, { width: 260 });
  if (invoice.customer.address) doc.text(invoice.customer.address, { width: 260 });
  doc.text(invoice.customer.email, { width: 260 });
  const billToBottom = doc.y;

  const facts: [string, string][] = [
    ['Invoice number', invoice.number],
    ['Issue date', formatDate(invoice.issuedAt)],
    ['Currency', invoice.currency],
  ];
  let factY = blockTop;
  for (const [label, value] of facts) {
    doc.font('Helvetica').fillColor(GREY).text(label, 330, factY, { width: 90 });
    doc
      .font('Helvetica-Bold')
      .fillColor('black')
      .text(value, 420, factY, { width: right - 420, align: 'right' });
    factY += 15;
  }

  // Order lines.
  let y = Math.max(billToBottom, factY) + 30;
  y = drawTableHeader(doc, y, invoice.currency);
  const pageBottom = doc.page.height - PAGE_MARGIN - FOOTER_SPACE;
  doc.font('Helvetica').fontSize(10).fillColor('black');
  for (const line of invoice.lines) {
    const rowHeight = Math.max(doc.heightOfString(line.description, { width: COLUMNS.description.width }), 12) + 6;
    if (y + rowHeight > pageBottom) {
      doc.addPage();
      y = drawTableHeader(doc, PAGE_MARGIN, invoice.currency);
      doc.font('Helvetica').fontSize(10).fillColor('black');
    }
    doc.text(line.description, COLUMNS.description.x, y, { width: COLUMNS.description.width });
    cell(doc, String(line.quantity), COLUMNS.quantity, y);
    cell(doc, formatAmount(line.unitPriceCents), COLUMNS.unitPrice, y);
    cell(doc, formatAmount(line.amountCents), COLUMNS.amount, y);
    y += rowHeight;
  }
  doc.moveTo(PAGE_MARGIN, y).lineTo(right, y).lineWidth(0.5).strokeColor(RULE).stroke();

  // Totals, kept together on one page.
  if (y + 80 > pageBottom) {
    doc.addPage();
    y = PAGE_MARGIN;
  }
  y += 10;
  const totals: [string, string, boolean][] = [
    ['Subtotal', formatMoney(invoice.subtotalCents, invoice.currency), false],
    ['VAT', formatMoney(invoice.taxCents, invoice.currency), false],
    ['Total', formatMoney(invoice.totalCents, invoice.currency), true],
  ];
  for (const [label, value, strong] of totals) {
    doc
      .font(strong ? 'Helvetica-Bold' : 'Helvetica')
      .fontSize(strong ? 12 : 10)
      .fillColor('black');
    doc.text(label, 300, y, { width: 145, align: 'right' });
    doc.text(value, COLUMNS.amount.x, y, { width: COLUMNS.amount.width, align: 'right' });
    y += strong ? 20 : 16;
  }

  doc
    .font('Helvetica')
    .fontSize(9)
    .fillColor(GREY)
    .text(
      `Please pay ${formatMoney(invoice.totalCents, invoice.currency)} within 30 days, quoting ${invoice.number}.`,
      PAGE_MARGIN,
      y + 20,
      { width: contentWidth },
    );
}

function drawTableHeader(doc: PDFKit.PDFDocument, y: number, currency: string): number {
  doc.font('Helvetica-Bold').fontSize(10).fillColor('black');
  doc.text('Description', COLUMNS.description.x, y, { width: COLUMNS.description.width });
  cell(doc, 'Qty', COLUMNS.quantity, y);
  cell(doc, `Unit price (${currency})`, COLUMNS.unitPrice, y);
  cell(doc, `Amount (${currency})`, COLUMNS.amount, y);
  const below = y + 16;
  doc
    .moveTo(PAGE_MARGIN, below)
    .lineTo(doc.page.width - PAGE_MARGIN, below)
    .lineWidth(0.5)
    .strokeColor(RULE)
    .stroke();
  return below + 6;
}

function cell(doc: PDFKit.PDFDocument, text: string, column: { x: number; width: number }, y: number): void {
  doc.text(text, column.x, y, { width: column.width, align: 'right' });
}

function drawFooters(doc: PDFKit.PDFDocument, invoice: InvoiceDocument, seller: Seller): void {
  const { start, count } = doc.bufferedPageRange();
  for (let i = start; i < start + count; i++) {
    doc.switchToPage(i);
    // Writing inside the bottom margin would otherwise make pdfkit start a new page.
    const bottom = doc.page.margins.bottom;
    doc.page.margins.bottom = 0;
    doc
      .font('Helvetica')
      .fontSize(8)
      .fillColor(GREY)
      .text(
        `${seller.name} · ${invoice.number} · page ${i - start + 1} of ${count}`,
        PAGE_MARGIN,
        doc.page.height - PAGE_MARGIN,
        { width: doc.page.width - 2 * PAGE_MARGIN, align: 'center' },
      );
    doc.page.margins.bottom = bottom;
  }
}
