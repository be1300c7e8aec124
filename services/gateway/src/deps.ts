import type { CoordinatorClient, Logger, Pool, RedisConnection } from '@baton/engine';
import type { GatewayConfig } from './config';
import type { DeploymentReader } from './kubernetes';

/** What the app needs from outside; main.ts opens them, tests pass their own. */
export interface AppDeps {
  pool: Pool;
  redis: RedisConnection;
  /**
   * The coordinator's client (engine/src/coordinator-client.ts): cancel and retry wake-ups and event
   * deliveries are jobs on its queue; new runs are announced on the inbox stream.
   */
  coordinator: CoordinatorClient;
  config: GatewayConfig;
  logger: Logger;
  /** Reads Deployment replicas when running in Kubernetes; absent elsewhere. */
  deployments?: DeploymentReader;
  /** True once shutdown began: /readyz turns 503 so the load balancer stops sending traffic. */
  isDraining?: () => boolean;
}
