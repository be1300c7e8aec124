import path from 'node:path';
import fs from 'node:fs/promises';
import pg from 'pg';
import { SQLSTATE } from './sqlstate';

/** Repository-level folders, found from both src/ (tests) and dist/ (built code, images). */
export const MIGRATIONS_DIR = path.resolve(__dirname, '../../../migrations');
export const SEEDS_DIR = path.resolve(__dirname, '../../../seeds');

/**
 * Creates the database named in `databaseUrl` when it does not exist yet, through the server's
 * `postgres` maintenance database. Returns true when it created it.
 */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!name) throw new Error('DATABASE_URL names no database');
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount) return false;
    // Identifiers cannot be bound as parameters; escapeIdentifier quotes it safely.
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
    return true;
  } catch (err) {
    // Two processes racing to create it: the loser finds it there.
    if ((err as { code?: string }).code === SQLSTATE.duplicateDatabase) return false;
    throw err;
  } finally {
    await client.end();
  }
}

/** Applies every pending postgrator migration in migrations/. Returns the applied versions. */
export async function migrate(databaseUrl: string, target = 'max'): Promise<string[]> {
  // postgrator 8 is ESM-only; this CommonJS project loads it with a native dynamic import.
  const { default: Postgrator } = await import('postgrator');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const postgrator = new Postgrator({
      migrationPattern: path.join(MIGRATIONS_DIR, '*.sql'),
      driver: 'pg',
      schemaTable: 'baton_schema_version',
      execQuery: (query: string) => client.query(query),
    });
    const applied = await postgrator.migrate(target);
    return applied.map((m: { version: number; name: string }) => `${m.version}.${m.name}`);
  } finally {
    await client.end();
  }
}

/** Loads the demo customers and orders (idempotent). */
export async function seedDemoData(databaseUrl: string): Promise<void> {
  const sql = await fs.readFile(path.join(SEEDS_DIR, 'demo.sql'), 'utf8');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
