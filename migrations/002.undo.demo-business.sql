DROP TABLE invoices;
DROP SEQUENCE invoice_number_seq;
DROP TABLE orders;
DROP TABLE customers;
