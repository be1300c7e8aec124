import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

/** Helpers for the deployment checks: helm and kubectl from .tools/bin, YAML parsing, model validation. */

export const ROOT = path.resolve(__dirname, '../..');
export const CHART = path.join(ROOT, 'helm/baton');
const BIN = path.join(ROOT, '.tools/bin');
export const HELM = path.join(BIN, 'helm');
export const KUBECTL = path.join(BIN, 'kubectl');

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
}

/** The optional APIs the chart looks for with .Capabilities.APIVersions.Has. */
export const ALL_APIS = [
  'keda.sh/v1alpha1/ScaledObject',
  'monitoring.coreos.com/v1/ServiceMonitor',
  'monitoring.coreos.com/v1/PodMonitor',
  'monitoring.coreos.com/v1/PrometheusRule',
];

export function run(bin: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const res = spawnSync(bin, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (res.error) throw res.error;
  return { status: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
}

export function parseDocuments(text: string): K8sObject[] {
  return YAML.parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length) throw new Error(`invalid YAML: ${doc.errors[0].message}`);
      return doc.toJSON() as K8sObject | null;
    })
    .filter((obj): obj is K8sObject => obj !== null && typeof obj === 'object');
}

export interface RenderOptions {
  apis?: string[];
  set?: string[];
  values?: string[];
  release?: string;
  namespace?: string;
}

/** `helm template` (hooks and test pods included); throws with helm's message on failure. */
export function helmTemplate(opts: RenderOptions = {}): K8sObject[] {
  const args = ['template', opts.release ?? 'baton', CHART, '--namespace', opts.namespace ?? 'baton'];
  for (const api of opts.apis ?? []) args.push('--api-versions', api);
  for (const s of opts.set ?? []) args.push('--set', s);
  for (const v of opts.values ?? []) args.push('--values', v);
  const res = run(HELM, args);
  if (res.status !== 0) throw new Error(`helm template failed: ${res.stderr}`);
  return parseDocuments(res.stdout);
}

/** `helm template` expected to fail; returns helm's error output. */
export function helmTemplateError(opts: RenderOptions): string {
  const args = ['template', 'baton', CHART];
  for (const api of opts.apis ?? []) args.push('--api-versions', api);
  for (const s of opts.set ?? []) args.push('--set', s);
  for (const v of opts.values ?? []) args.push('--values', v);
  const res = run(HELM, args);
  if (res.status === 0) throw new Error(`helm template accepted ${JSON.stringify(opts.set)}`);
  return res.stderr;
}

/** The NOTES.txt helm prints after an install, rendered offline (`helm install --dry-run=client`). */
export function helmNotes(opts: Omit<RenderOptions, 'apis'> = {}): string {
  // helm install has no --api-versions: these NOTES are those of a cluster without KEDA.
  const args = [
    'install',
    opts.release ?? 'baton',
    CHART,
    '--namespace',
    opts.namespace ?? 'baton',
    '--dry-run=client',
  ];
  for (const s of opts.set ?? []) args.push('--set', s);
  for (const v of opts.values ?? []) args.push('--values', v);
  const res = run(HELM, args);
  if (res.status !== 0) throw new Error(`helm install --dry-run failed: ${res.stderr}`);
  const at = res.stdout.indexOf('\nNOTES:\n');
  if (at < 0) throw new Error('helm printed no NOTES');
  return res.stdout.slice(at + '\nNOTES:\n'.length);
}

/** Plural resource names of the kinds the chart renders, for the fake API server's discovery. */
const FAKE_RESOURCES: Record<string, Record<string, string>> = {
  v1: {
    ConfigMap: 'configmaps',
    Pod: 'pods',
    Secret: 'secrets',
    Service: 'services',
    ServiceAccount: 'serviceaccounts',
  },
  'apps/v1': { Deployment: 'deployments' },
  'batch/v1': { Job: 'jobs' },
  'policy/v1': { PodDisruptionBudget: 'poddisruptionbudgets' },
  'networking.k8s.io/v1': { Ingress: 'ingresses', NetworkPolicy: 'networkpolicies' },
  'rbac.authorization.k8s.io/v1': { Role: 'roles', RoleBinding: 'rolebindings' },
};

/**
 * `helm template --dry-run=server` against a fake Kubernetes API server that holds `existing`
 * objects: what the chart's `lookup` finds on an upgrade. helm runs asynchronously so the server,
 * in this process, can answer. Discovery lists core kinds only, so Capabilities has no KEDA.
 */
export async function helmTemplateOnCluster(
  existing: K8sObject[],
  opts: RenderOptions = {},
): Promise<{ status: number; stderr: string; objects: K8sObject[] }> {
  const http = require('node:http') as typeof import('node:http');
  const os = require('node:os') as typeof import('node:os');
  const { execFile } = require('node:child_process') as typeof import('node:child_process');
  const namespace = opts.namespace ?? 'baton';
  const send = (res: import('node:http').ServerResponse, code: number, body: object): void => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url ?? '/', 'http://fake');
    if (pathname === '/version') return send(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0' });
    if (pathname === '/api') return send(res, 200, { kind: 'APIVersions', versions: ['v1'] });
    if (pathname === '/apis') {
      const groups = Object.keys(FAKE_RESOURCES)
        .filter((gv) => gv.includes('/'))
        .map((gv) => {
          const [group, version] = gv.split('/');
          const v = { groupVersion: gv, version };
          return { name: group, versions: [v], preferredVersion: v };
        });
      return send(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups });
    }
    for (const [gv, kinds] of Object.entries(FAKE_RESOURCES)) {
      const base = gv === 'v1' ? '/api/v1' : `/apis/${gv}`;
      if (pathname === base) {
        const resources = Object.entries(kinds).map(([kind, name]) => ({
          name,
          singularName: kind.toLowerCase(),
          namespaced: true,
          kind,
          verbs: ['get', 'list', 'create', 'update', 'patch', 'delete'],
        }));
        return send(res, 200, { kind: 'APIResourceList', groupVersion: gv, resources });
      }
      for (const [kind, plural] of Object.entries(kinds)) {
        const match = new RegExp(`^${base}/namespaces/([^/]+)/${plural}(?:/([^/]+))?$`).exec(pathname);
        if (!match) continue;
        const [, ns, name] = match;
        const items = existing.filter(
          (o) => o.apiVersion === gv && o.kind === kind && (o.metadata.namespace ?? namespace) === ns,
        );
        if (!name) return send(res, 200, { kind: `${kind}List`, apiVersion: gv, metadata: {}, items });
        const found = items.find((o) => o.metadata.name === name);
        if (found) return send(res, 200, found);
      }
    }
    send(res, 404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-fake-kube-'));
  try {
    const port = (server.address() as import('node:net').AddressInfo).port;
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(
      kubeconfig,
      YAML.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster: { server: `http://127.0.0.1:${port}` } }],
        users: [{ name: 'fake', user: { token: 'fake' } }],
        contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake', namespace } }],
        'current-context': 'fake',
      }),
    );
    const args = ['template', opts.release ?? 'baton', CHART, '--namespace', namespace];
    args.push('--dry-run=server', '--disable-openapi-validation', '--kubeconfig', kubeconfig);
    for (const s of opts.set ?? []) args.push('--set', s);
    for (const v of opts.values ?? []) args.push('--values', v);
    // KUBECACHEDIR: discovery is cached in the temporary folder, not in ~/.kube.
    const env = { ...process.env, KUBECACHEDIR: path.join(dir, 'cache') };
    return await new Promise((resolve) => {
      execFile(HELM, args, { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ status, stderr, objects: status === 0 ? parseDocuments(stdout) : [] });
      });
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function kubectlKustomize(dir: string): K8sObject[] {
  return parseDocuments(execFileSync(KUBECTL, ['kustomize', dir], { cwd: ROOT, encoding: 'utf8' }));
}

/** Model classes of kubernetes-models and @kubernetes-models/keda, by apiVersion and kind. */
function modelFor(apiVersion: string, kind: string): (new (data: object) => { validate(): void }) | undefined {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const modules: Record<string, string> = { 'keda.sh': '@kubernetes-models/keda/keda.sh' };
  const base = modules[group] ?? (group ? `kubernetes-models/${group}` : 'kubernetes-models');
  try {
    const mod = require(`${base}/${version}`);
    return mod[kind];
  } catch {
    return undefined;
  }
}

/** Validates against the published schema; returns undefined when it has no model (CRDs not covered). */
export function validateObject(obj: K8sObject): 'validated' | 'no-model' {
  const Model = modelFor(obj.apiVersion, obj.kind);
  if (!Model) return 'no-model';
  new Model(obj).validate();
  return 'validated';
}

/**
 * kubernetes-models accepts unknown fields; a typo (`readinesProbe`) would silently do nothing.
 * These are the fields the API knows on the objects the chart writes most.
 */
export const KNOWN_FIELDS = {
  podSpec: new Set([
    'activeDeadlineSeconds',
    'affinity',
    'automountServiceAccountToken',
    'containers',
    'dnsConfig',
    'dnsPolicy',
    'enableServiceLinks',
    'ephemeralContainers',
    'hostAliases',
    'hostIPC',
    'hostNetwork',
    'hostPID',
    'hostUsers',
    'hostname',
    'imagePullSecrets',
    'initContainers',
    'nodeName',
    'nodeSelector',
    'os',
    'overhead',
    'preemptionPolicy',
    'priority',
    'priorityClassName',
    'readinessGates',
    'resourceClaims',
    'resources',
    'restartPolicy',
    'runtimeClassName',
    'schedulerName',
    'schedulingGates',
    'securityContext',
    'serviceAccount',
    'serviceAccountName',
    'setHostnameAsFQDN',
    'shareProcessNamespace',
    'subdomain',
    'terminationGracePeriodSeconds',
    'tolerations',
    'topologySpreadConstraints',
    'volumes',
  ]),
  container: new Set([
    'args',
    'command',
    'env',
    'envFrom',
    'image',
    'imagePullPolicy',
    'lifecycle',
    'livenessProbe',
    'name',
    'ports',
    'readinessProbe',
    'resizePolicy',
    'resources',
    'restartPolicy',
    'securityContext',
    'startupProbe',
    'stdin',
    'stdinOnce',
    'terminationMessagePath',
    'terminationMessagePolicy',
    'tty',
    'volumeDevices',
    'volumeMounts',
    'workingDir',
  ]),
  deploymentSpec: new Set([
    'minReadySeconds',
    'paused',
    'progressDeadlineSeconds',
    'replicas',
    'revisionHistoryLimit',
    'selector',
    'strategy',
    'template',
  ]),
  scaledObjectSpec: new Set([
    'advanced',
    'cooldownPeriod',
    'fallback',
    'idleReplicaCount',
    'initialCooldownPeriod',
    'maxReplicaCount',
    'minReplicaCount',
    'pollingInterval',
    'scaleTargetRef',
    'triggers',
  ]),
};

export function unknownKeys(obj: object | undefined, known: Set<string>): string[] {
  return Object.keys(obj ?? {}).filter((key) => !known.has(key));
}

/** Pod template of a workload (Deployment, StatefulSet, Job) or the spec of a bare Pod. */
export function podSpecOf(obj: K8sObject): any | undefined {
  if (obj.kind === 'Pod') return obj.spec;
  return obj.spec?.template?.spec;
}

export function podLabelsOf(obj: K8sObject): Record<string, string> {
  if (obj.kind === 'Pod') return obj.metadata.labels ?? {};
  return obj.spec?.template?.metadata?.labels ?? {};
}

export function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found)
    throw new Error(`no ${kind} ${name} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}

export function ofKind(objects: K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}

/** Folders of functions/ with a package.json: the step functions that must be deployed. */
export function functionFolders(): string[] {
  const dir = path.join(ROOT, 'functions');
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, 'package.json')))
    .map((d) => d.name)
    .sort();
}

export function readYaml(file: string): any {
  return YAML.parse(fs.readFileSync(path.join(ROOT, file), 'utf8'), { merge: true });
}

export function matchesSelector(labels: Record<string, string>, selector: Record<string, string>): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}
