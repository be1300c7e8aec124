import { TARGET_TTL_MS, type ProcessTarget, type RedisConnection } from '@baton/sdk';
import { redisKeys } from './keys';

/**
 * Prometheus HTTP service discovery: every process that serves /metrics registers itself in Redis
 * with a heartbeat (`registerTarget`, sdk/src/discovery.ts); the gateway reads the live ones here.
 */
export { advertiseHost, HEARTBEAT_INTERVAL_MS, registerTarget, TARGET_TTL_MS, type ProcessTarget } from '@baton/sdk';

function targetsKey(prefix: string): string {
  return redisKeys(prefix).targets;
}

export async function listTargets(redis: RedisConnection, prefix: string, now = Date.now()): Promise<ProcessTarget[]> {
  const entries = await redis.hgetall(targetsKey(prefix));
  const live: ProcessTarget[] = [];
  const dead: string[] = [];
  for (const [instance, json] of Object.entries(entries)) {
    const target = JSON.parse(json) as ProcessTarget & { seenAt: number };
    if (now - target.seenAt > TARGET_TTL_MS) dead.push(instance);
    else
      live.push({
        component: target.component,
        instance,
        metricsUrl: target.metricsUrl,
        ...(target.function ? { function: target.function } : {}),
      });
  }
  if (dead.length) await redis.hdel(targetsKey(prefix), ...dead);
  return live.sort((a, b) => a.instance.localeCompare(b.instance));
}

/** Prometheus HTTP SD: one target group per process, its labels prefixed so they are kept as-is. */
export function toHttpServiceDiscovery(
  targets: ProcessTarget[],
): { targets: string[]; labels: Record<string, string> }[] {
  return targets.map((t) => {
    const url = new URL(t.metricsUrl);
    return {
      targets: [url.host],
      labels: {
        __metrics_path__: url.pathname,
        __scheme__: url.protocol.replace(':', ''),
        component: t.component,
        instance: t.instance,
        ...(t.function ? { function: t.function } : {}),
      },
    };
  });
}
