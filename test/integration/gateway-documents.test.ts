import crypto from 'node:crypto';
import type { Express } from 'express';
import request from 'supertest';
import type { TestEnv } from '../support/env';
import { useGatewaySuite } from '../support/gateway-suite';

/**
 * Documents: GET /v1/documents/:id. The setup (a real PostgreSQL and Redis, no coordinator) is
 * test/support/gateway-suite.ts; this suite has its own database and Redis prefix.
 */

describe('gateway HTTP API: documents', () => {
  const suite = useGatewaySuite('gateway-documents');
  let env: TestEnv;
  let app: Express;
  beforeAll(() => {
    ({ env, app } = suite);
  });

  describe('documents', () => {
    it('GET /v1/documents/:id returns the bytes inline with their content type', async () => {
      const id = crypto.randomUUID();
      const bytes = Buffer.concat([Buffer.from('%PDF-1.4\n'), crypto.randomBytes(300), Buffer.from('\n%%EOF\n')]);
      await env.pool.query(
        `INSERT INTO documents (id, filename, content_type, size_bytes, content)
         VALUES ($1, 'INV-0001.pdf', 'application/pdf', $2, $3)`,
        [id, bytes.length, bytes],
      );
      const res = await request(app)
        .get(`/v1/documents/${id}`)
        .buffer(true)
        .parse((response, done) => {
          const chunks: Buffer[] = [];
          response.on('data', (c: Buffer) => chunks.push(c));
          response.on('end', () => done(null, Buffer.concat(chunks)));
        })
        .expect(200);
      expect(res.headers['content-type']).toBe('application/pdf');
      expect(res.headers['content-disposition']).toMatch(/^inline; filename="INV-0001\.pdf"/);
      expect(Buffer.compare(res.body as Buffer, bytes)).toBe(0);
    });

    it('is 404 for an unknown document and 400 for a non-UUID', async () => {
      const res = await request(app).get(`/v1/documents/${crypto.randomUUID()}`).expect(404);
      expect(res.body.error.code).toBe('NOT_FOUND');
      expect((await request(app).get('/v1/documents/abc').expect(400)).body.error.code).toBe('INVALID_ID');
    });
  });
});
