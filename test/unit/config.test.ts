import { baseEnv, ConfigError, maskCredentials, parseEnv, redisOptionsFrom, toBaseConfig } from '@baton/shared';
import { loadCoordinatorConfig } from '../../services/coordinator/src/config';

describe('configuration', () => {
  it('applies the documented defaults', () => {
    const config = toBaseConfig(parseEnv(baseEnv, {}));
    expect(config).toEqual({
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/baton',
      database: { statementTimeoutMs: 30_000, lockTimeoutMs: 10_000, idleInTransactionTimeoutMs: 30_000 },
      redis: { host: '127.0.0.1', port: 6379, db: 0 },
      queuePrefix: 'baton',
      logLevel: 'info',
    });
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
    });
    expect(() => parseEnv(baseEnv, { DATABASE_POOL_MAX: '0' })).toThrow(/DATABASE_POOL_MAX/);
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
