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
  for (const s of opts.set ?? []) args.push('--set', s);
  const res = run(HELM, args);
  if (res.status === 0) throw new Error(`helm template accepted ${JSON.stringify(opts.set)}`);
  return res.stderr;
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
