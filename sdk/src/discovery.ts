import os from 'node:os';
import type { RedisConnection } from './redis';
import { redisKeys } from './keys';

/**
 * Every process that serves /metrics registers itself in Redis with a heartbeat, so the gateway
 * can answer Prometheus HTTP service discovery (`GET /v1/prometheus/targets`) with the live ones:
 * a plain Prometheus (compose, bare metal) finds every component without static config. In
 * Kubernetes a PodMonitor does the same job. (The gateway's reading side is engine/src/discovery.ts.)
 */
export interface ProcessTarget {
  component: string;
  function?: string;
  /** Unique per process: `<host>:<pid>`. */
  instance: string;
  /** Where Prometheus scrapes it, e.g. `http://10.0.0.7:9464/metrics`. */
  metricsUrl: string;
}

export const HEARTBEAT_INTERVAL_MS = 10_000;
/** A target silent for three heartbeats is dead (crashed, or killed without deregistering). */
export const TARGET_TTL_MS = 3 * HEARTBEAT_INTERVAL_MS;

/** The host other machines reach this process at: BATON_ADVERTISE_HOST (the pod IP in a cluster), else the host name. */
export function advertiseHost(env: NodeJS.ProcessEnv = process.env): string {
  return env.BATON_ADVERTISE_HOST || os.hostname();
}

export function registerTarget(
  redis: RedisConnection,
  prefix: string,
  target: ProcessTarget,
): { stop(): Promise<void> } {
  const key = redisKeys(prefix).targets;
  // A failed beat is not an error to report: the next one (HEARTBEAT_INTERVAL_MS) writes it again,
  // and readers only drop a target unseen for TARGET_TTL_MS.
  const beat = () =>
    redis.hset(key, target.instance, JSON.stringify({ ...target, seenAt: Date.now() })).catch(() => undefined);
  void beat();
  const timer = setInterval(beat, HEARTBEAT_INTERVAL_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      // Shutting down: a target left behind expires after TARGET_TTL_MS.
      await redis.hdel(key, target.instance).catch(() => undefined);
    },
  };
}
