import fs from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';

/**
 * Replicas of each function's Deployment, read with @kubernetes/client-node when the gateway runs
 * in a cluster. One list call per refresh (label `baton.io/function`), cached briefly so the
 * dashboard's polling does not turn into API-server load. Needs only get/list/watch on deployments
 * in its namespace (the chart's Role).
 */
export interface Replicas {
  desired: number;
  ready: number;
}

export interface DeploymentReader {
  replicasByFunction(): Promise<Map<string, Replicas>>;
}

export const FUNCTION_LABEL = 'baton.io/function';
const CACHE_MS = 5_000;
const NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** @kubernetes/client-node 1.x is ESM-only: loaded with a native dynamic import, only when used. */
export function loadKubernetesClient(): Promise<typeof import('@kubernetes/client-node')> {
  return import('@kubernetes/client-node');
}

export async function createDeploymentReader(kc: KubeConfig, namespace: string): Promise<DeploymentReader> {
  const { AppsV1Api } = await loadKubernetesClient();
  const apps = kc.makeApiClient(AppsV1Api);
  let cached: { at: number; value: Map<string, Replicas> } | undefined;
  return {
    async replicasByFunction() {
      if (cached && Date.now() - cached.at < CACHE_MS) return cached.value;
      const list = await apps.listNamespacedDeployment({ namespace, labelSelector: FUNCTION_LABEL });
      const value = new Map<string, Replicas>();
      for (const d of list.items) {
        const fn = d.metadata?.labels?.[FUNCTION_LABEL];
        if (fn) value.set(fn, { desired: d.spec?.replicas ?? 0, ready: d.status?.readyReplicas ?? 0 });
      }
      cached = { at: Date.now(), value };
      return value;
    },
  };
}

/** In a pod (the service account is mounted): a reader for its own namespace. Elsewhere: none. */
export async function inClusterDeploymentReader(
  env: NodeJS.ProcessEnv = process.env,
): Promise<DeploymentReader | undefined> {
  if (!env.KUBERNETES_SERVICE_HOST || !fs.existsSync(NAMESPACE_FILE)) return undefined;
  const { KubeConfig } = await loadKubernetesClient();
  const kc = new KubeConfig();
  kc.loadFromCluster();
  return createDeploymentReader(kc, fs.readFileSync(NAMESPACE_FILE, 'utf8').trim());
}
