import { createLogger, type CoordinatorClient } from '@baton/engine';
import type { Express } from 'express';
import { createApp, type AppDeps } from '../../services/gateway/src/app';
import { loadGatewayConfig, type GatewayConfig } from '../../services/gateway/src/config';
import type { TestEnv } from './env';

/**
 * The gateway app over a test env: the documented defaults (parsed from an empty environment, so a
 * new setting needs no change here), the suite's database and Redis prefix, then `config` overrides.
 */
export function testApp(
  env: TestEnv,
  coordinator: CoordinatorClient,
  opts: { config?: Partial<GatewayConfig>; deps?: Partial<AppDeps> } = {},
): Express {
  return createApp({
    pool: env.pool,
    redis: env.redis,
    coordinator,
    // No rate limit by default: tests poll the API far faster than any client should.
    config: { ...loadGatewayConfig({}), ...env.config, port: 0, rateLimit: 0, ...opts.config },
    logger: createLogger('test', 'silent'),
    ...opts.deps,
  });
}
