import { ConfigError } from '@baton/workflow';
import {
  baseEnv,
  deadInboxKey,
  inboxKey,
  inboxShardOf,
  maskCredentials,
  migrationDatabaseUrl,
  parseEnv,
  redisOptionsFrom,
  toBaseConfig,
} from '@baton/engine';
import { loadCoordinatorConfig } from '../../services/coordinator/src/config';

describe('configuration', () => {
  it('applies the documented defaults', () => {
    const config = toBaseConfig(parseEnv(baseEnv, {}));
    expect(config).toEqual({
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/baton',
      database: {
        statementTimeoutMs: 30_000,
        lockTimeoutMs: 10_000,
        idleInTransactionTimeoutMs: 30_000,
        namedStatements: true,
      },
      redis: { host: '127.0.0.1', port: 6379, db: 0 },
      queuePrefix: 'baton',
      inboxShards: 1,
      logLevel: 'info',
    });
  });

  it('reads REDIS_CLUSTER_NODES over REDIS_URL, keeping its credentials and TLS', () => {
    const env = parseEnv(baseEnv, {
      REDIS_CLUSTER_NODES: 'redis-0:6379, redis-1:6380,10.0.0.3:7000',
      REDIS_URL: 'rediss://u:pw@ignored:1/0',
      BATON_INBOX_SHARDS: '16',
    });
    const config = toBaseConfig(env);
    expect(config.redis).toEqual({
      host: 'redis-0',
      port: 6379,
      db: 0,
      cluster: [
        { host: 'redis-0', port: 6379 },
        { host: 'redis-1', port: 6380 },
        { host: '10.0.0.3', port: 7000 },
      ],
      username: 'u',
      password: 'pw',
      tls: {},
    });
    expect(config.inboxShards).toBe(16);
    expect(() => parseEnv(baseEnv, { REDIS_CLUSTER_NODES: 'redis-0' })).toThrow(/REDIS_CLUSTER_NODES/);
    expect(() =>
      redisOptionsFrom({ REDIS_CLUSTER_NODES: 'a:1', REDIS_URL: 'redis://x/2', REDIS_HOST: 'x', REDIS_PORT: 1 }),
    ).toThrow(/database 0/);
    expect(() => parseEnv(baseEnv, { BATON_INBOX_SHARDS: '0' })).toThrow(/BATON_INBOX_SHARDS/);
  });

  it('reads the inbox shards a coordinator drains (BATON_INBOX_DRAIN_SHARDS): the larger count is read', () => {
    expect(loadCoordinatorConfig({})).toMatchObject({ inboxShards: 1, inboxReadShards: 1 });
    expect(loadCoordinatorConfig({ BATON_INBOX_SHARDS: '4', BATON_INBOX_DRAIN_SHARDS: '16' })).toMatchObject({
      inboxShards: 4,
      inboxReadShards: 16,
    });
    expect(loadCoordinatorConfig({ BATON_INBOX_SHARDS: '16', BATON_INBOX_DRAIN_SHARDS: '4' })).toMatchObject({
      inboxReadShards: 16,
    });
  });

  it('puts a run in one inbox shard, stably, and spreads runs over the shards', () => {
    expect(inboxShardOf('5f0c2d7e-0000-4000-8000-000000000001', 1)).toBe(0);
    const ids = Array.from({ length: 1600 }, (_, i) => `5f0c2d7e-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const counts = new Array<number>(16).fill(0);
    for (const id of ids) {
      const shard = inboxShardOf(id, 16);
      expect(inboxShardOf(id, 16)).toBe(shard);
      counts[shard] += 1;
    }
    // Every shard takes a share (100 each if even); none is left empty or takes double.
    for (const count of counts) expect(count).toBeGreaterThan(50);
    for (const count of counts) expect(count).toBeLessThan(200);
    expect(inboxKey('baton', 0)).toBe('baton:{coordinator}:inbox');
    expect(inboxKey('baton', 3)).toBe('baton:{inbox.3}:inbox');
    expect(deadInboxKey('baton', 3)).toBe('baton:{inbox.3}:inbox:dead');
  });

  it('reads the pool size and the PostgreSQL session bounds (0 turns one off)', () => {
    const config = toBaseConfig(
      parseEnv(baseEnv, {
        DATABASE_POOL_MAX: '4',
        BATON_PG_STATEMENT_TIMEOUT_MS: '0',
        BATON_PG_LOCK_TIMEOUT_MS: '250',
      }),
    );
    expect(config.database).toEqual({
      poolMax: 4,
      statementTimeoutMs: 0,
      lockTimeoutMs: 250,
      idleInTransactionTimeoutMs: 30_000,
      namedStatements: true,
    });
    expect(() => parseEnv(baseEnv, { DATABASE_POOL_MAX: '0' })).toThrow(/DATABASE_POOL_MAX/);
  });

  it('behind a transaction-mode pooler: no named statements, migrations on their own URL', () => {
    const pooled = parseEnv(baseEnv, {
      DATABASE_URL: 'postgres://baton@pgbouncer:6432/baton',
      BATON_MIGRATION_DATABASE_URL: 'postgres://baton@postgres:5432/baton',
      BATON_PG_NAMED_STATEMENTS: 'false',
    });
    expect(toBaseConfig(pooled).database?.namedStatements).toBe(false);
    expect(toBaseConfig(pooled).databaseUrl).toBe('postgres://baton@pgbouncer:6432/baton');
    expect(migrationDatabaseUrl(pooled)).toBe('postgres://baton@postgres:5432/baton');
    // Unset: migrations use DATABASE_URL.
    expect(migrationDatabaseUrl(parseEnv(baseEnv, { DATABASE_URL: 'postgres://x@db:5432/b' }))).toBe(
      'postgres://x@db:5432/b',
    );
    expect(() => parseEnv(baseEnv, { BATON_PG_NAMED_STATEMENTS: 'no' })).toThrow(/BATON_PG_NAMED_STATEMENTS/);
    expect(() => parseEnv(baseEnv, { BATON_MIGRATION_DATABASE_URL: 'direct' })).toThrow(/BATON_MIGRATION_DATABASE_URL/);
  });

  it('reads the coordinator limits of forEach lists and child depth, with their defaults', () => {
    expect(loadCoordinatorConfig({})).toMatchObject({ maxForEachItems: 10_000, maxChildDepth: 16 });
    expect(loadCoordinatorConfig({ BATON_FOREACH_MAX_ITEMS: '50', BATON_MAX_CHILD_DEPTH: '2' })).toMatchObject({
      maxForEachItems: 50,
      maxChildDepth: 2,
    });
    expect(() => loadCoordinatorConfig({ BATON_FOREACH_MAX_ITEMS: '0' })).toThrow(ConfigError);
  });

  it('reads REDIS_URL with credentials and a db index', () => {
    expect(
      redisOptionsFrom({ REDIS_URL: 'redis://u:p%40ss@redis.local:6380/3', REDIS_HOST: 'x', REDIS_PORT: 1 }),
    ).toEqual({
      host: 'redis.local',
      port: 6380,
      db: 3,
      username: 'u',
      password: 'p@ss',
    });
    expect(() => redisOptionsFrom({ REDIS_URL: 'http://x', REDIS_HOST: 'x', REDIS_PORT: 1 })).toThrow(ConfigError);
  });

  it('names every bad variable on one line without printing passwords', () => {
    let message = '';
    try {
      parseEnv(baseEnv, { DATABASE_URL: 'not a url://user:s3cret@host', REDIS_PORT: 'abc', LOG_LEVEL: 'loud' });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).not.toContain('\n');
    expect(message).toMatch(/DATABASE_URL=.* is invalid/);
    expect(message).toMatch(/REDIS_PORT="abc" is invalid/);
    expect(message).toMatch(/LOG_LEVEL="loud" is invalid/);
    expect(message).not.toContain('s3cret');
    expect(maskCredentials('postgres://me:pw@db/x')).toBe('postgres://***@db/x');
  });
});
